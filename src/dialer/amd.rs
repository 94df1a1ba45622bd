//! Answering-machine detection (`detect voicemail` on SIP calls): the
//! energy-based method of Asterisk's `AMD()`. The first seconds of what the
//! far end sends are cut into 20 ms frames, each silent or voiced by its mean
//! amplitude; a long first silence, a long greeting or many words mean a
//! machine, a short greeting followed by silence means a person.

use serde::Deserialize;

/// The trunk file's `[amd]` table. Every figure in milliseconds but the
/// word count and the threshold; the defaults are Asterisk's.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// `audio` (this detector) or `header:NAME`: the provider's verdict in a
    /// header of the 200 OK (a value naming a machine means voicemail).
    pub method: String,
    /// Silence before any voice that means a machine.
    pub initial_silence_ms: u32,
    /// Voice in a greeting that means a machine.
    pub greeting_ms: u32,
    /// Silence after a greeting that means a person.
    pub after_greeting_silence_ms: u32,
    /// The most audio to listen to; undecided after it means a person.
    pub total_ms: u32,
    /// Voice shorter than this is not a word.
    pub min_word_ms: u32,
    /// Silence that separates two words.
    pub between_words_silence_ms: u32,
    /// Words in the greeting that mean a machine.
    pub max_words: u32,
    /// One word longer than this means a machine.
    pub max_word_ms: u32,
    /// A frame whose mean absolute sample is below this is silent.
    pub silence_threshold: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            method: "audio".into(),
            initial_silence_ms: 2500,
            greeting_ms: 1500,
            after_greeting_silence_ms: 800,
            total_ms: 5000,
            min_word_ms: 100,
            between_words_silence_ms: 50,
            max_words: 2,
            max_word_ms: 5000,
            silence_threshold: 256,
        }
    }
}

impl Settings {
    /// The header named by `method = "header:NAME"`.
    pub fn header(&self) -> Option<&str> {
        self.method.strip_prefix("header:").map(str::trim)
    }

    pub fn check(&self) -> Result<(), String> {
        if self.method != "audio" && self.header().is_none_or(str::is_empty) {
            return Err(format!(
                "[amd] method = \"{}\": write \"audio\" or \"header:NAME\" (such as \"header:X-Answered-By\")",
                self.method
            ));
        }
        if self.total_ms == 0 || self.total_ms > 60_000 {
            return Err("[amd] total_ms is a number of milliseconds from 1 to 60000".into());
        }
        Ok(())
    }
}

/// What a provider's header says: a machine when its value names one.
pub fn header_says_machine(value: &str) -> bool {
    let v = value.to_ascii_lowercase();
    ["machine", "voicemail", "answering", "fax"]
        .iter()
        .any(|w| v.contains(w))
}

/// The detector's verdict and why (Asterisk's cause names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Machine(&'static str),
    Person(&'static str),
    /// Nothing decided within `total_ms`: treated as a person.
    NotSure,
}

impl Verdict {
    pub fn is_machine(self) -> bool {
        matches!(self, Verdict::Machine(_))
    }
}

const FRAME_MS: u32 = 20;

/// The detector's state, fed one 20 ms frame at a time.
pub struct Detector {
    s: Settings,
    total_ms: u32,
    silence_ms: u32,
    voice_ms: u32,
    consecutive_voice_ms: u32,
    words: u32,
    in_word: bool,
    in_initial_silence: bool,
    in_greeting: bool,
}

impl Detector {
    pub fn new(s: Settings) -> Detector {
        Detector {
            s,
            total_ms: 0,
            silence_ms: 0,
            voice_ms: 0,
            consecutive_voice_ms: 0,
            words: 0,
            // As Asterisk: a voice heard at once is not counted as a word
            // until a silence has come first.
            in_word: true,
            in_initial_silence: true,
            in_greeting: false,
        }
    }

    /// Feeds one frame (160 samples); a verdict once one is reached.
    pub fn feed(&mut self, frame: &[i16]) -> Option<Verdict> {
        self.total_ms += FRAME_MS;
        if self.total_ms >= self.s.total_ms {
            return Some(Verdict::NotSure);
        }
        let energy = if frame.is_empty() {
            0
        } else {
            frame
                .iter()
                .map(|v| u64::from(v.unsigned_abs()))
                .sum::<u64>()
                / frame.len() as u64
        };
        if energy < u64::from(self.s.silence_threshold) {
            self.silence_ms += FRAME_MS;
            if self.silence_ms >= self.s.between_words_silence_ms {
                self.in_word = false;
                self.consecutive_voice_ms = 0;
            }
            if self.in_initial_silence && self.silence_ms >= self.s.initial_silence_ms {
                return Some(Verdict::Machine("initial silence"));
            }
            if self.in_greeting && self.silence_ms >= self.s.after_greeting_silence_ms {
                return Some(Verdict::Person("silence after a greeting"));
            }
        } else {
            self.consecutive_voice_ms += FRAME_MS;
            self.voice_ms += FRAME_MS;
            if self.consecutive_voice_ms >= self.s.min_word_ms && !self.in_word {
                self.words += 1;
                self.in_word = true;
            }
            if self.consecutive_voice_ms >= self.s.max_word_ms {
                return Some(Verdict::Machine("long word"));
            }
            if self.words >= self.s.max_words {
                return Some(Verdict::Machine("many words"));
            }
            if self.in_greeting && self.voice_ms >= self.s.greeting_ms {
                return Some(Verdict::Machine("long greeting"));
            }
            if self.voice_ms >= self.s.min_word_ms {
                self.silence_ms = 0;
            }
            if self.consecutive_voice_ms >= self.s.min_word_ms && !self.in_greeting {
                self.in_initial_silence = false;
                self.in_greeting = true;
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames of `ms` of a tone loud enough to be voice, or of silence.
    fn frames(voice: bool, ms: u32) -> Vec<Vec<i16>> {
        (0..ms / FRAME_MS)
            .map(|_| {
                (0..160)
                    .map(|k| {
                        if voice {
                            if k % 8 < 4 {
                                3000
                            } else {
                                -3000
                            }
                        } else {
                            (k % 3) as i16 * 20
                        }
                    })
                    .collect()
            })
            .collect()
    }

    fn verdict(parts: &[(bool, u32)]) -> Verdict {
        let mut d = Detector::new(Settings::default());
        for (voice, ms) in parts {
            for f in frames(*voice, *ms) {
                if let Some(v) = d.feed(&f) {
                    return v;
                }
            }
        }
        Verdict::NotSure
    }

    #[test]
    fn the_asterisk_rules() {
        // "Hello?" then silence: a person.
        assert_eq!(
            verdict(&[(false, 300), (true, 600), (false, 1000)]),
            Verdict::Person("silence after a greeting")
        );
        // A greeting that goes on: a machine.
        assert_eq!(
            verdict(&[(false, 300), (true, 2000)]),
            Verdict::Machine("long greeting")
        );
        // Words and pauses, as a recorded greeting: a machine.
        assert_eq!(
            verdict(&[(false, 300), (true, 300), (false, 200), (true, 300)]),
            Verdict::Machine("many words")
        );
        // Nobody speaks: a machine (Asterisk's INITIALSILENCE).
        assert_eq!(
            verdict(&[(false, 3000)]),
            Verdict::Machine("initial silence")
        );
        // Short bursts that never settle within the total: not sure.
        let mut d = Detector::new(Settings {
            initial_silence_ms: 10_000,
            ..Settings::default()
        });
        let got = frames(false, 6000).iter().find_map(|f| d.feed(f));
        assert_eq!(got, Some(Verdict::NotSure));
    }

    #[test]
    fn headers_and_settings() {
        assert!(header_says_machine("MACHINE_END_BEEP"));
        assert!(header_says_machine("voicemail"));
        assert!(!header_says_machine("human"));
        let s = Settings {
            method: "header:X-Answered-By".into(),
            ..Settings::default()
        };
        assert_eq!(s.header(), Some("X-Answered-By"));
        assert!(s.check().is_ok());
        let bad = Settings {
            method: "magic".into(),
            ..Settings::default()
        };
        assert!(bad.check().unwrap_err().contains("header:NAME"));
    }
}
