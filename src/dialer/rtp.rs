//! RTP for the SIP dialer: one UDP socket per call, named in the SDP offer;
//! the answer's address and payload types; keys pressed, read from RFC 4733
//! telephone-events; and audio sent as G.711 (µ-law or A-law) in 20 ms
//! frames.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// The payload type flowc offers for telephone-events.
pub const EVENT_PT: u8 = 101;
/// Samples in a 20 ms frame at 8 kHz.
const FRAME: usize = 160;

/// What the far end's SDP answer says of its audio.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    pub remote: SocketAddr,
    /// The first audio payload type the answer lists among PCMU (0) and PCMA (8).
    pub codec: u8,
    /// The telephone-event payload type it uses, if it named one.
    pub events: Option<u8>,
}

/// Reads an SDP answer: `c=` (session or media level) and the first
/// `m=audio` line.
pub fn parse_answer(sdp: &str) -> Option<Answer> {
    let mut address: Option<IpAddr> = None;
    let mut port = None;
    let mut formats: Vec<u8> = Vec::new();
    let mut events = None;
    for line in sdp.lines().map(str::trim) {
        if let Some(c) = line
            .strip_prefix("c=IN IP4 ")
            .or_else(|| line.strip_prefix("c=IN IP6 "))
        {
            address = c.split('/').next().and_then(|a| a.trim().parse().ok());
        } else if let Some(m) = line.strip_prefix("m=audio ") {
            if port.is_none() {
                let mut parts = m.split_whitespace();
                port = parts.next().and_then(|p| p.parse::<u16>().ok());
                formats = parts.skip(1).filter_map(|f| f.parse().ok()).collect();
            }
        } else if let Some(map) = line.strip_prefix("a=rtpmap:") {
            if let Some((pt, name)) = map.split_once(' ') {
                if name.to_ascii_lowercase().starts_with("telephone-event") {
                    events = pt.parse().ok();
                }
            }
        }
    }
    let codec = formats.iter().copied().find(|f| *f == 0 || *f == 8)?;
    Some(Answer {
        remote: SocketAddr::new(address?, port?),
        codec,
        events,
    })
}

/// An RTP packet's payload type, timestamp and payload.
fn rtp(packet: &[u8]) -> Option<(u8, u32, &[u8])> {
    if packet.len() < 12 || packet[0] >> 6 != 2 {
        return None;
    }
    let csrc = usize::from(packet[0] & 0x0f);
    let mut at = 12 + 4 * csrc;
    if packet[0] & 0x10 != 0 {
        // A header extension: its length in 32-bit words follows its profile.
        let words = usize::from(u16::from_be_bytes([
            *packet.get(at + 2)?,
            *packet.get(at + 3)?,
        ]));
        at += 4 + 4 * words;
    }
    let mut end = packet.len();
    if packet[0] & 0x20 != 0 {
        end = end.checked_sub(usize::from(*packet.last()?))?;
    }
    let payload = packet.get(at..end)?;
    let timestamp = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
    Some((packet[1] & 0x7f, timestamp, payload))
}

/// An RFC 4733 event: the key, and whether this packet ends it.
fn telephone_event(payload: &[u8]) -> Option<(char, bool)> {
    if payload.len() != 4 {
        return None;
    }
    let key = match payload[0] {
        d @ 0..=9 => char::from(b'0' + d),
        10 => '*',
        11 => '#',
        12..=15 => char::from(b'A' + payload[0] - 12),
        _ => return None,
    };
    Some((key, payload[1] & 0x80 != 0))
}

/// The segment of a G.711 value: the first end it does not exceed.
fn segment(value: i32, ends: &[i32; 8]) -> usize {
    ends.iter().position(|e| value <= *e).unwrap_or(8)
}

/// G.711 µ-law of a linear sample (the ITU reference algorithm, as in
/// Sun's g711.c).
pub fn ulaw(sample: i16) -> u8 {
    const ENDS: [i32; 8] = [0x3f, 0x7f, 0xff, 0x1ff, 0x3ff, 0x7ff, 0xfff, 0x1fff];
    let mut v = i32::from(sample) >> 2;
    let mask = if v < 0 {
        v = -v;
        0x7f
    } else {
        0xff
    };
    let v = v.min(8159) + 33;
    let seg = segment(v, &ENDS);
    if seg >= 8 {
        return (0x7f ^ mask) as u8;
    }
    (((seg as i32) << 4 | ((v >> (seg + 1)) & 0x0f)) ^ mask) as u8
}

/// G.711 A-law of a linear sample.
pub fn alaw(sample: i16) -> u8 {
    const ENDS: [i32; 8] = [0x1f, 0x3f, 0x7f, 0xff, 0x1ff, 0x3ff, 0x7ff, 0xfff];
    let mut v = i32::from(sample) >> 3;
    let mask = if v >= 0 {
        0xd5
    } else {
        v = -v - 1;
        0x55
    };
    let seg = segment(v, &ENDS);
    if seg >= 8 {
        return (0x7f ^ mask) as u8;
    }
    let mantissa = if seg < 2 {
        (v >> 1) & 0x0f
    } else {
        (v >> seg) & 0x0f
    };
    (((seg as i32) << 4 | mantissa) ^ mask) as u8
}

/// The linear sample of a G.711 µ-law byte.
pub fn ulaw_to_linear(byte: u8) -> i16 {
    let u = !byte;
    let t = ((i32::from(u & 0x0f) << 3) + 0x84) << ((u & 0x70) >> 4);
    (if u & 0x80 != 0 { 0x84 - t } else { t - 0x84 }) as i16
}

/// The linear sample of a G.711 A-law byte.
pub fn alaw_to_linear(byte: u8) -> i16 {
    let a = byte ^ 0x55;
    let mut t = i32::from(a & 0x0f) << 4;
    let seg = (a & 0x70) >> 4;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => t = (t + 0x108) << (seg - 1),
    }
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

/// Where received audio goes while someone listens (the voicemail detector,
/// a recording): 20 ms of samples per message.
type Tap = Arc<Mutex<Option<mpsc::UnboundedSender<Vec<i16>>>>>;

/// The sending side of a call's RTP stream: its numbers go on from one
/// prompt to the next.
struct Outgoing {
    ssrc: u32,
    seq: u16,
    timestamp: u32,
    /// The next packet begins a talk spurt (the marker bit).
    spurt: bool,
}

/// A socket on a port of `from..=to`, trying each in turn from where the
/// last call's search ended (RTP ports are usually even; odd ones are left
/// for RTCP).
async fn bind_in(ip: IpAddr, from: u16, to: u16) -> std::io::Result<UdpSocket> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let evens: Vec<u16> = (from..=to).filter(|p| p % 2 == 0).collect();
    let ports = if evens.is_empty() {
        (from..=to).collect()
    } else {
        evens
    };
    let start = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) as usize;
    for k in 0..ports.len() {
        let port = ports[(start + k) % ports.len()];
        if let Ok(s) = UdpSocket::bind(SocketAddr::new(ip, port)).await {
            NEXT.store((start + k + 1) as u32, std::sync::atomic::Ordering::Relaxed);
            return Ok(s);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        format!("every RTP port of {from}-{to} is taken"),
    ))
}

/// A socket on `ip` (in `ports` when given).
async fn socket(ip: IpAddr, ports: Option<(u16, u16)>) -> std::io::Result<UdpSocket> {
    match ports {
        None => UdpSocket::bind(SocketAddr::new(ip, 0)).await,
        Some((from, to)) => bind_in(ip, from, to).await,
    }
}

/// The RTP port offered on calls that play, say, hear and record nothing:
/// one socket for all of them, whose packets are read and dropped (a port
/// nobody listens on would answer each packet with an ICMP error, and a
/// socket per call costs a dozen system calls).
pub struct Sink {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Sink {
    pub async fn bind(ip: IpAddr, ports: Option<(u16, u16)>) -> std::io::Result<Sink> {
        let socket = socket(ip, ports).await?;
        let port = socket.local_addr()?.port();
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            while socket.recv(&mut buf).await.is_ok() {}
        });
        Ok(Sink { port, task })
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One call's media.
pub struct Media {
    socket: Arc<UdpSocket>,
    port: u16,
    answer: Mutex<Option<Answer>>,
    press: mpsc::UnboundedSender<char>,
    keys: tokio::sync::Mutex<mpsc::UnboundedReceiver<char>>,
    tap: Tap,
    out: tokio::sync::Mutex<Outgoing>,
    task: tokio::task::JoinHandle<()>,
}

impl Media {
    /// Binds a socket on `ip` (in `ports` when given: the next free one
    /// after the last taken) and starts listening for keys and audio.
    pub async fn bind(ip: IpAddr, ports: Option<(u16, u16)>) -> std::io::Result<Media> {
        let socket = Arc::new(socket(ip, ports).await?);
        let port = socket.local_addr()?.port();
        let (press, rx) = mpsc::unbounded_channel();
        let reader = socket.clone();
        let keys = press.clone();
        let tap: Tap = Arc::new(Mutex::new(None));
        let listener = tap.clone();
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            // Each key's end is sent three times, with the event's timestamp.
            let mut last_end: Option<u32> = None;
            while let Ok(n) = reader.recv(&mut buf).await {
                let Some((pt, timestamp, payload)) = rtp(&buf[..n]) else {
                    continue;
                };
                if pt == 0 || pt == 8 {
                    let mut tap = listener.lock().expect("not poisoned");
                    if let Some(to) = tap.as_ref() {
                        let decode = if pt == 0 {
                            ulaw_to_linear
                        } else {
                            alaw_to_linear
                        };
                        if to
                            .send(payload.iter().map(|b| decode(*b)).collect())
                            .is_err()
                        {
                            *tap = None;
                        }
                    }
                } else if let Some((key, true)) = telephone_event(payload) {
                    if last_end != Some(timestamp) {
                        last_end = Some(timestamp);
                        let _ = keys.send(key);
                    }
                }
            }
        });
        static PROCESS: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
        let ssrc: u32 = *PROCESS.get_or_init(std::process::id) ^ u32::from(port).rotate_left(16);
        Ok(Media {
            socket,
            port,
            answer: Mutex::new(None),
            press,
            keys: tokio::sync::Mutex::new(rx),
            tap,
            out: tokio::sync::Mutex::new(Outgoing {
                ssrc,
                seq: 0,
                timestamp: 0,
                spurt: true,
            }),
            task,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Takes the far end's SDP answer: where to send audio, in which codec.
    pub fn answered(&self, sdp: &[u8]) {
        let answer = std::str::from_utf8(sdp).ok().and_then(parse_answer);
        *self.answer.lock().expect("not poisoned") = answer;
    }

    /// A key pressed, learnt another way (SIP INFO).
    pub fn press(&self, key: char) {
        let _ = self.press.send(key);
    }

    /// Up to `count` keys, within `timeout` of the first wait; `None` when
    /// none came.
    pub async fn keys(&self, count: u32, timeout: Duration) -> Option<String> {
        let mut rx = self.keys.lock().await;
        let mut got = String::new();
        let deadline = tokio::time::Instant::now() + timeout;
        while got.chars().count() < count as usize {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(k)) => got.push(k),
                _ => break,
            }
        }
        (!got.is_empty()).then_some(got)
    }

    /// The audio the far end sends from now on, 20 ms at a time, until the
    /// receiver is dropped (one listener at a time: a new one replaces it).
    pub fn listen(&self) -> mpsc::UnboundedReceiver<Vec<i16>> {
        let (tx, rx) = mpsc::unbounded_channel();
        *self.tap.lock().expect("not poisoned") = Some(tx);
        rx
    }

    /// Sends 8 kHz mono samples to the far end, in real time: 20 ms frames,
    /// paced by the clock.
    pub async fn play(&self, samples: &[i16]) {
        let Some(answer) = self.answer.lock().expect("not poisoned").clone() else {
            return;
        };
        let mut out = self.out.lock().await;
        out.spurt = true;
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        for frame in samples.chunks(FRAME) {
            tick.tick().await;
            let mut packet = Vec::with_capacity(12 + FRAME);
            let marker = if out.spurt { 0x80 } else { 0 };
            out.spurt = false;
            packet.extend_from_slice(&[0x80, marker | answer.codec]);
            packet.extend_from_slice(&out.seq.to_be_bytes());
            packet.extend_from_slice(&out.timestamp.to_be_bytes());
            packet.extend_from_slice(&out.ssrc.to_be_bytes());
            packet.extend(frame.iter().map(|s| {
                if answer.codec == 8 {
                    alaw(*s)
                } else {
                    ulaw(*s)
                }
            }));
            let _ = self.socket.send_to(&packet, answer.remote).await;
            out.seq = out.seq.wrapping_add(1);
            out.timestamp = out.timestamp.wrapping_add(FRAME as u32);
        }
    }
}

impl Drop for Media {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g711_matches_the_reference_values() {
        // From Python's audioop (lin2ulaw, lin2alaw), which follows ITU-T G.711.
        let vectors: [(i16, u8, u8); 9] = [
            (0, 0xff, 0xd5),
            (-1, 0x7e, 0x55),
            (i16::MAX, 0x80, 0xaa),
            (i16::MIN, 0x00, 0x2a),
            (1000, 0xce, 0xfa),
            (-1000, 0x4e, 0x7a),
            (8, 0xfe, 0xd5),
            (-8, 0x7e, 0x55),
            (100, 0xf2, 0xd3),
        ];
        for (sample, mu, a) in vectors {
            assert_eq!(ulaw(sample), mu, "µ-law of {sample}");
            assert_eq!(alaw(sample), a, "A-law of {sample}");
        }
        // Decoding (audioop's ulaw2lin, alaw2lin).
        let decoded: [(u8, i16, i16); 6] = [
            (0xff, 0, 848),
            (0x00, -32124, -5504),
            (0x80, 32124, 5504),
            (0xce, 988, 440),
            (0xd5, 716, 8),
            (0x2a, -5372, -32256),
        ];
        for (byte, mu, a) in decoded {
            assert_eq!(ulaw_to_linear(byte), mu, "µ-law {byte:#x}");
            assert_eq!(alaw_to_linear(byte), a, "A-law {byte:#x}");
        }
        // Every value survives a round trip within its step.
        for v in (i16::MIN..=i16::MAX).step_by(97) {
            let back = i32::from(ulaw_to_linear(ulaw(v)));
            assert!((back - i32::from(v)).abs() <= 1024, "{v} -> {back}");
            let back = i32::from(alaw_to_linear(alaw(v)));
            assert!((back - i32::from(v)).abs() <= 1024, "{v} -> {back}");
        }
    }

    #[test]
    fn an_answer_names_where_and_how() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\nm=audio 6000 RTP/AVP 8 0 96\r\na=rtpmap:96 telephone-event/8000\r\n";
        assert_eq!(
            parse_answer(sdp),
            Some(Answer {
                remote: "10.0.0.2:6000".parse().unwrap(),
                codec: 8,
                events: Some(96)
            })
        );
    }
}
