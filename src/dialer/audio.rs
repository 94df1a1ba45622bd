//! Audio for SIP calls: WAV files read and converted to what a call carries
//! (8 kHz, mono, 16-bit samples), and recordings written back as WAV.

use std::io::Read;
use std::path::Path;

/// The rate of a call's audio (G.711).
pub const RATE: u32 = 8000;

/// Reads a WAV file (PCM 8 to 32 bits or 32-bit float, any rate, any number
/// of channels) into 8 kHz mono samples.
pub fn read_wav(reader: impl Read) -> Result<Vec<i16>, String> {
    let mut wav = hound::WavReader::new(reader).map_err(|e| format!("not a WAV file ({e})"))?;
    let spec = wav.spec();
    let channels = usize::from(spec.channels.max(1));
    let interleaved: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => wav
            .samples::<f32>()
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?,
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample.clamp(1, 32) - 1)) as f32;
            wav.samples::<i32>()
                .map(|s| s.map(|v| v as f32 * scale))
                .collect::<Result<_, _>>()
                .map_err(|e| e.to_string())?
        }
    };
    let mono: Vec<f32> = interleaved
        .chunks(channels)
        .map(|frame| frame.iter().sum::<f32>() / frame.len() as f32)
        .collect();
    Ok(resample(&mono, spec.sample_rate)
        .into_iter()
        .map(|v| (v * 32768.0).round().clamp(-32768.0, 32767.0) as i16)
        .collect())
}

/// Reads a WAV file from disk, saying which file failed.
pub fn load(path: &Path) -> Result<Vec<i16>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    read_wav(std::io::BufReader::new(file)).map_err(|e| format!("{}: {e}", path.display()))
}

/// Converts `samples` at `rate` to 8 kHz. Going down, each output sample is
/// the mean of the input it covers (a low-pass that keeps speech clear);
/// going up, input samples are interpolated.
fn resample(samples: &[f32], rate: u32) -> Vec<f32> {
    if rate == RATE || samples.is_empty() {
        return samples.to_vec();
    }
    let step = f64::from(rate) / f64::from(RATE);
    let out_len = (samples.len() as f64 / step).floor() as usize;
    let mut out = Vec::with_capacity(out_len);
    for k in 0..out_len {
        let start = k as f64 * step;
        if step > 1.0 {
            let (from, to) = (start as usize, ((start + step) as usize).min(samples.len()));
            let span = &samples[from..to.max(from + 1).min(samples.len())];
            out.push(span.iter().sum::<f32>() / span.len() as f32);
        } else {
            let i = start as usize;
            let frac = (start - i as f64) as f32;
            let next = samples.get(i + 1).copied().unwrap_or(samples[i]);
            out.push(samples[i] * (1.0 - frac) + next * frac);
        }
    }
    out
}

/// Writes 8 kHz mono samples as a 16-bit WAV file.
pub fn write_wav(path: &Path, samples: &[i16]) -> Result<(), String> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let fail = |e: hound::Error| format!("{}: {e}", path.display());
    let mut w = hound::WavWriter::create(path, spec).map_err(fail)?;
    for s in samples {
        w.write_sample(*s).map_err(fail)?;
    }
    w.finalize().map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(rate: u32, channels: u16, samples: &[i16]) -> Vec<u8> {
        let mut bytes = std::io::Cursor::new(Vec::new());
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::new(&mut bytes, spec).unwrap();
        for s in samples {
            w.write_sample(*s).unwrap();
        }
        w.finalize().unwrap();
        bytes.into_inner()
    }

    #[test]
    fn files_become_8_khz_mono() {
        // One second of a 16 kHz stereo file whose channels cancel out but
        // for a constant: half a second of 8 kHz audio per half second.
        let stereo: Vec<i16> = (0..16_000).flat_map(|_| [12_000, -4_000]).collect();
        let out = read_wav(&wav(16_000, 2, &stereo)[..]).unwrap();
        assert_eq!(out.len(), 8_000);
        assert!(
            out.iter().all(|s| (i32::from(*s) - 4_000).abs() <= 1),
            "{:?}",
            &out[..4]
        );
        // 8 kHz mono passes through unchanged.
        let same: Vec<i16> = (0..800).map(|k| (k * 40 - 16_000) as i16).collect();
        assert_eq!(read_wav(&wav(8_000, 1, &same)[..]).unwrap(), same);
        // A 4 kHz file is stretched to twice its samples.
        assert_eq!(read_wav(&wav(4_000, 1, &same)[..]).unwrap().len(), 1_600);
        assert!(read_wav(&b"RIFF...."[..])
            .unwrap_err()
            .starts_with("not a WAV file"));
    }
}
