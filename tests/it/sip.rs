//! The SIP dialer against sipp (Debian's `sip-tester`) as the trunk, on
//! 127.0.0.1: each test checks flowc's outcome and SIP status **and** sipp's
//! exit status, which proves flowc's ACK, CANCEL and BYE were right.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use crate::root;

const FLOW: &str = r#"
contact { phone: phone }

calendar always {
  hours mon-sun 00:00-24:00
}

compliance house {
  max attempts 10 per 24h
}

flow sip {
  timezone "UTC"
  calendar always
  compliance house
  step call {
    dial contact.phone timeout 2s
    on answered -> end completed "answered"
    on other -> end failed "not_reached"
  }
}
"#;

fn sipp_here() -> bool {
    let found = Command::new("sipp")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        assert!(
            std::env::var("CI").is_err(),
            "sipp is missing: .ci/run installs Debian's sip-tester"
        );
        eprintln!("skipped: no sipp (apt-get install sip-tester)");
    }
    found
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Trunk {
    dir: PathBuf,
    port: u16,
    sipp: Option<Child>,
}

impl Trunk {
    /// sipp playing `scenario` (a file of tests/sip, with `@NAME@` replaced).
    fn start(name: &str, scenario: &str, replace: &[(&str, &str)]) -> Trunk {
        Trunk::start_on("u1", name, scenario, replace)
    }

    /// `transport`: sipp's `-t` (`u1` UDP, `t1` TCP on one connection).
    fn start_on(transport: &str, name: &str, scenario: &str, replace: &[(&str, &str)]) -> Trunk {
        Trunk::launch(name, scenario, replace, &["-m", "1", "-t", transport])
    }

    /// sipp with its other arguments `args` (`-m CALLS`, `-t`, `-lost`).
    fn launch(name: &str, scenario: &str, replace: &[(&str, &str)], args: &[&str]) -> Trunk {
        let dir = std::env::temp_dir().join(format!("flowc-sip-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut xml = std::fs::read_to_string(root().join("tests/sip").join(scenario)).unwrap();
        for (k, v) in replace {
            xml = xml.replace(&format!("@{k}@"), v);
        }
        std::fs::write(dir.join("scenario.xml"), xml).unwrap();
        std::fs::write(dir.join("flow.flow"), FLOW).unwrap();
        std::fs::write(dir.join("list.csv"), "phone\n+33612345670\n").unwrap();
        let port = free_udp_port();
        let mut sipp = Command::new("sipp")
            .arg("-sf")
            .arg(dir.join("scenario.xml"))
            .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-nostdin"])
            .args(args)
            .args(["-timeout", "20s", "-trace_err", "-error_file"])
            .arg(dir.join("errors.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_listening(&mut sipp, port);
        Trunk {
            dir,
            port,
            sipp: Some(sipp),
        }
    }

    /// A trunk file of T1 = 50 ms (Timer B 3.2 s) and the lines `extra`.
    fn trunk_file(&self, extra: &str) -> String {
        self.trunk_file_t1(50, extra)
    }

    fn trunk_file_t1(&self, t1_ms: u64, extra: &str) -> String {
        let path = self.dir.join("trunk.toml");
        std::fs::write(
            &path,
            format!("t1_ms = {t1_ms}\nlocal = \"127.0.0.1:0\"\n{extra}"),
        )
        .unwrap();
        path.display().to_string()
    }

    fn run(&self, trunk: &str, env: &[(&str, &str)]) -> Output {
        self.run_with(trunk, env, &[])
    }

    fn run_with(&self, trunk: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
        let p = |n: &str| self.dir.join(n).display().to_string();
        Command::new(env!("CARGO_BIN_EXE_flowc"))
            .args(["run", &p("flow.flow"), "--contacts", &p("list.csv")])
            .args(["--dialer", &format!("sip:127.0.0.1:{}", self.port)])
            .args(["--trunk", trunk, "--db", &p("run.db"), "--format", "json"])
            .args(args)
            .envs(env.iter().copied())
            .output()
            .unwrap()
    }

    /// (outcome, SIP status, reason) of the one attempt.
    fn attempt(&self) -> (String, Option<u16>, Option<String>) {
        let db = rusqlite::Connection::open(self.dir.join("run.db")).unwrap();
        db.query_row(
            "SELECT outcome, sip_status, sip_reason FROM attempts",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap()
    }

    /// sipp's exit status (0: every call went as its scenario says).
    fn sipp_status(&mut self) -> i32 {
        let status = self.sipp.take().unwrap().wait().unwrap();
        let errors = std::fs::read_to_string(self.dir.join("errors.log")).unwrap_or_default();
        let code = status.code().unwrap_or(-1);
        if code != 0 {
            eprintln!("sipp's errors:\n{errors}");
        }
        code
    }
}

impl Drop for Trunk {
    fn drop(&mut self) {
        if let Some(mut c) = self.sipp.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[test]
fn an_answered_call_is_acked_and_hung_up_by_us() {
    if !sipp_here() {
        return;
    }
    let mut trunk = Trunk::start("answer", "answer.xml", &[]);
    let o = trunk.run(&trunk.trunk_file(""), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        trunk.attempt(),
        ("answered".into(), Some(200), Some("OK".into()))
    );
    assert_eq!(trunk.sipp_status(), 0, "sipp saw no ACK or BYE");
}

#[test]
fn final_responses_are_outcomes() {
    if !sipp_here() {
        return;
    }
    let cases = [
        ("486", "Busy Here", "busy"),
        ("600", "Busy Everywhere", "busy"),
        ("480", "Temporarily Unavailable", "no_answer"),
        ("408", "Request Timeout", "no_answer"),
        ("603", "Decline", "rejected"),
        ("404", "Not Found", "invalid_number"),
        ("484", "Address Incomplete", "invalid_number"),
        ("503", "Service Unavailable", "network_error"),
    ];
    for (status, reason, outcome) in cases {
        let mut trunk = Trunk::start(
            &format!("final{status}"),
            "final.xml",
            &[("STATUS", status), ("REASON", reason)],
        );
        let o = trunk.run(&trunk.trunk_file(""), &[]);
        assert_eq!(o.status.code(), Some(0), "{status}: {}", stderr(&o));
        assert_eq!(
            trunk.attempt(),
            (
                outcome.into(),
                Some(status.parse().unwrap()),
                Some(reason.into())
            ),
            "{status}"
        );
        // Reports read the status back (failure patterns group by it).
        let store = flowc::store::Store::open_read_only(&trunk.dir.join("run.db")).unwrap();
        let flow = store.program().unwrap().flow.unwrap();
        let (_, results) = store.results(&flow).unwrap();
        assert_eq!(
            results[0].attempts[0].sip_status,
            Some(status.parse().unwrap())
        );
        assert_eq!(trunk.sipp_status(), 0, "{status}: sipp saw no ACK");
    }
}

#[test]
fn a_call_ringing_past_its_timeout_is_cancelled() {
    if !sipp_here() {
        return;
    }
    let mut trunk = Trunk::start("ring", "ring.xml", &[]);
    let o = trunk.run(&trunk.trunk_file(""), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        trunk.attempt(),
        (
            "no_answer".into(),
            Some(487),
            Some("Request Terminated".into())
        )
    );
    assert_eq!(trunk.sipp_status(), 0, "sipp saw no CANCEL or ACK");
}

#[test]
fn digest_challenges_are_answered() {
    if !sipp_here() {
        return;
    }
    let auth = "username = \"flowc\"\npassword_env = \"FLOWC_TEST_TRUNK_PASSWORD\"\n";
    for (scenario, password, want) in [
        ("auth401.xml", "s3cret", ("answered", 200, "OK")),
        ("auth401.xml", "wrong", ("network_error", 403, "Forbidden")),
        ("auth407.xml", "s3cret", ("answered", 200, "OK")),
    ] {
        let mut trunk = Trunk::start(&format!("{scenario}-{password}"), scenario, &[]);
        let o = trunk.run(
            &trunk.trunk_file(auth),
            &[("FLOWC_TEST_TRUNK_PASSWORD", password)],
        );
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_eq!(
            trunk.attempt(),
            (want.0.into(), Some(want.1), Some(want.2.into())),
            "{scenario} with {password}"
        );
        assert_eq!(trunk.sipp_status(), 0, "{scenario} with {password}");
    }
}

/// A trunk that never answers: the INVITE's Timer B (64×T1, 3.2 s with
/// T1 = 50 ms) ends it, and the stack's own 408 is a network error.
#[test]
fn no_response_is_a_network_error() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let dir = std::env::temp_dir().join(format!("flowc-sip-silent-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let p = |n: &str| dir.join(n).display().to_string();
    std::fs::write(dir.join("flow.flow"), FLOW).unwrap();
    std::fs::write(dir.join("list.csv"), "phone\n+33612345670\n").unwrap();
    std::fs::write(
        dir.join("trunk.toml"),
        "t1_ms = 50\nlocal = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_flowc"))
        .args(["run", &p("flow.flow"), "--contacts", &p("list.csv")])
        .args(["--dialer", &format!("sip:127.0.0.1:{port}")])
        .args([
            "--trunk",
            &p("trunk.toml"),
            "--db",
            &p("run.db"),
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let db = rusqlite::Connection::open(dir.join("run.db")).unwrap();
    let outcome: String = db
        .query_row("SELECT outcome FROM attempts", [], |r| r.get(0))
        .unwrap();
    assert_eq!(outcome, "network_error");
    // The INVITE was sent, and sent again (Timer A).
    let mut buf = [0u8; 2048];
    silent
        .set_read_timeout(Some(std::time::Duration::from_millis(100)))
        .unwrap();
    let (n, _) = silent.recv_from(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"INVITE sip:+33612345670@"));
    assert!(silent.recv_from(&mut buf).is_ok(), "no retransmission");
}

#[test]
fn a_trunk_file_that_cannot_be_read_is_a_usage_error() {
    let dir = std::env::temp_dir().join(format!("flowc-sip-trunk-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let p = |n: &str| dir.join(n).display().to_string();
    std::fs::write(dir.join("flow.flow"), FLOW).unwrap();
    std::fs::write(dir.join("list.csv"), "phone\n+33612345670\n").unwrap();
    for (text, says) in [
        (
            "transport = \"sctp\"\n",
            "write \"udp\", \"tcp\" or \"tls\"",
        ),
        (
            "transport = \"tls\"\ntls_ca = \"/nonexistent/ca.pem\"\n",
            "the trunk's tls_ca /nonexistent/ca.pem cannot be read",
        ),
        (
            "username = \"a\"\n",
            "username and password_env go together",
        ),
        (
            "transport = \"tls\"\ntls_cert = \"c.pem\"\n",
            "tls_cert and tls_key go together",
        ),
        (
            "transport = \"tls\"\ntls_cert = \"/nonexistent/c.pem\"\ntls_key = \"k.pem\"\n",
            "the trunk's tls_cert /nonexistent/c.pem cannot be read",
        ),
        (
            format!(
                "transport = \"tls\"\ntls_cert = \"{0}\"\ntls_key = \"{0}\"\n",
                p("list.csv")
            )
            .as_str(),
            "holds no certificate",
        ),
        ("password = \"x\"\n", "unknown field `password`"),
        (
            "username = \"a\"\npassword_env = \"FLOWC_TEST_UNSET_VARIABLE\"\n",
            "FLOWC_TEST_UNSET_VARIABLE, which is not set",
        ),
    ] {
        std::fs::write(dir.join("trunk.toml"), text).unwrap();
        let o = Command::new(env!("CARGO_BIN_EXE_flowc"))
            .args(["run", &p("flow.flow"), "--contacts", &p("list.csv")])
            .args([
                "--dialer",
                "sip:127.0.0.1:5060",
                "--trunk",
                &p("trunk.toml"),
            ])
            .args(["--db", &p("run.db")])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{text}");
        assert!(stderr(&o).contains(says), "{text}: {}", stderr(&o));
    }
}

/// The crash drill on the SIP dialer: `flowc run` killed (SIGKILL) three
/// times while calls are under way, resumed each time; sipp's own log of
/// the INVITEs it received shows no number called twice for one attempt
/// (one Call-ID per number: every call is answered, so one attempt each).
#[test]
fn a_sip_run_killed_during_calls_never_calls_a_number_twice() {
    if !sipp_here() {
        return;
    }
    let contacts = 200;
    let dir = std::env::temp_dir().join(format!("flowc-sip-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let p = |n: &str| dir.join(n).display().to_string();
    std::fs::write(
        dir.join("flow.flow"),
        FLOW.replace(
            "  calendar always\n",
            "  calendar always\n  concurrency 6\n",
        ),
    )
    .unwrap();
    let mut list = String::from("phone\n");
    for k in 0..contacts {
        list.push_str(&format!("+336123{k:05}\n"));
    }
    std::fs::write(dir.join("list.csv"), list).unwrap();
    std::fs::write(
        dir.join("trunk.toml"),
        "t1_ms = 50\nlocal = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let port = free_udp_port();
    let mut sipp = Command::new("sipp")
        .arg("-sf")
        .arg(root().join("tests/sip/answer.xml"))
        .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-nostdin"])
        .args(["-trace_msg", "-message_file", &p("messages.log")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(&mut sipp, port);
    let run = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_flowc"));
        c.args(["run", &p("flow.flow"), "--contacts", &p("list.csv")])
            .args(["--dialer", &format!("sip:127.0.0.1:{port}")])
            .args([
                "--trunk",
                &p("trunk.toml"),
                "--db",
                &p("run.db"),
                "--format",
                "json",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    };
    // Call-ID of each INVITE sipp received, by number.
    let invites = || -> std::collections::HashMap<String, std::collections::BTreeSet<String>> {
        let log = std::fs::read_to_string(dir.join("messages.log")).unwrap_or_default();
        let mut by_number: std::collections::HashMap<_, std::collections::BTreeSet<_>> =
            Default::default();
        for message in log.split("INVITE sip:").skip(1) {
            let number = message.split('@').next().unwrap().to_string();
            let call_id = message
                .lines()
                .find_map(|l| l.strip_prefix("Call-ID: "))
                .unwrap_or_default()
                .trim()
                .to_string();
            by_number.entry(number).or_default().insert(call_id);
        }
        by_number
    };
    let count = || invites().values().map(|c| c.len()).sum::<usize>();
    for kill in 0..3 {
        let target = count() + 15;
        let mut child = run().spawn().unwrap();
        while count() < target {
            assert!(
                child.try_wait().unwrap().is_none(),
                "kill {kill}: the run ended before its calls"
            );
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    let last = run().output().unwrap();
    let _ = sipp.kill();
    let _ = sipp.wait();
    assert_eq!(last.status.code(), Some(0), "{}", stderr(&last));
    let report: serde_json::Value = serde_json::from_slice(&last.stdout).unwrap();
    assert_eq!(report["contactsPending"], 0, "{report}");
    assert_eq!(report["contactsInProgress"], 0, "{report}");
    let invites = invites();
    let twice: Vec<_> = invites.iter().filter(|(_, ids)| ids.len() > 1).collect();
    assert!(twice.is_empty(), "called twice: {twice:?}");
    // Every attempt the store holds reached sipp, and nothing else did.
    let db = rusqlite::Connection::open(dir.join("run.db")).unwrap();
    let attempts: usize = db
        .query_row("SELECT count(*) FROM attempts", [], |r| r.get(0))
        .unwrap();
    assert!(
        invites.len() <= attempts && attempts <= contacts,
        "{} INVITEs, {attempts} attempts",
        invites.len()
    );
}

/// Keys pressed on a SIP call are read from RFC 4733 telephone-events (sipp
/// plays its own recordings of them into the call's RTP port).
#[test]
fn keys_pressed_on_a_sip_call_are_gathered() {
    if !sipp_here() {
        return;
    }
    for key in ["1", "9"] {
        let pcap = format!("/usr/share/sip-tester/dtmf_2833_{key}.pcap");
        let mut trunk = Trunk::start(&format!("keys{key}"), "keys.xml", &[("PCAP", &pcap)]);
        std::fs::write(
            trunk.dir.join("flow.flow"),
            FLOW.replace(
                "    on answered -> end completed \"answered\"",
                "    on answered -> gather 1 digit timeout 4s {\n      \"1\" -> end completed \"pressed_1\"\n      \"9\" -> end completed \"pressed_9\"\n      timeout -> end failed \"no_key\"\n      invalid -> end failed \"bad_key\"\n    }",
            ),
        )
        .unwrap();
        let o = trunk.run(&trunk.trunk_file(""), &[]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(
            report["endReasons"][format!("completed: pressed_{key}")],
            1,
            "{report}"
        );
        let db = rusqlite::Connection::open(trunk.dir.join("run.db")).unwrap();
        let keys: String = db
            .query_row("SELECT keys FROM attempts", [], |r| r.get(0))
            .unwrap();
        assert_eq!(keys, format!("[\"{key}\"]"));
        assert_eq!(trunk.sipp_status(), 0, "key {key}");
    }
}

const MEDIA_FLOW: &str = r#"
contact { phone: phone }

calendar always {
  hours mon-sun 00:00-24:00
}

compliance house {
  max attempts 10 per 24h
}

flow sip {
  timezone "UTC"
  calendar always
  compliance house
  step call {
    dial contact.phone timeout 2s detect voicemail
    on voicemail -> {
      play "tone.wav"
      end completed "left_message"
    }
    on answered -> {
      say "Thanks"
      record max 3s as note
      end completed "person"
    }
    on other -> end failed "not_reached"
  }
}
"#;

/// What the test's own RTP port received: (payload type, sequence,
/// timestamp, samples decoded from µ-law), packet by packet.
type Packet = (u8, u16, u32, Vec<i16>);

fn listen_rtp() -> (u16, std::thread::JoinHandle<Vec<Packet>>) {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(3)))
        .unwrap();
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        while let Ok(n) = socket.recv(&mut buf) {
            let p = &buf[..n];
            got.push((
                p[1] & 0x7f,
                u16::from_be_bytes([p[2], p[3]]),
                u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
                p[12..]
                    .iter()
                    .map(|b| flowc::dialer::rtp::ulaw_to_linear(*b))
                    .collect(),
            ));
        }
        got
    });
    (port, reader)
}

fn pcap_of(dir: &std::path::Path, wavs: &[&str]) -> String {
    let out = dir.join("speech.pcap");
    let status = Command::new("/usr/bin/python3")
        .arg(root().join("tests/sip/wav2pcap.py"))
        .args(wavs.iter().map(|w| root().join("tests/sip/audio").join(w)))
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    out.display().to_string()
}

fn media_trunk(trunk: &Trunk, extra: &str) -> String {
    trunk.trunk_file(&format!(
        "tts = \"/usr/bin/python3 {}\"\n{extra}",
        root().join("tests/sip/tts.py").display()
    ))
}

/// A recorded voicemail greeting (espeak-ng's voice, tests/sip/audio) is
/// classified as voicemail by the energy detector, and the flow's `play`
/// reaches the far end: every 20 ms of the WAV file, in order, as G.711.
#[test]
fn a_greeting_is_voicemail_and_the_message_is_played() {
    if !sipp_here() {
        return;
    }
    let (port, heard) = listen_rtp();
    let dir = std::env::temp_dir().join(format!("flowc-sip-pcap-vm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = pcap_of(&dir, &["greeting.wav"]);
    let mut trunk = Trunk::start(
        "voicemail",
        "media.xml",
        &[
            ("PCAP", &pcap),
            ("RTPPORT", &port.to_string()),
            ("ANSWERED", "unknown"),
        ],
    );
    std::fs::write(trunk.dir.join("flow.flow"), MEDIA_FLOW).unwrap();
    let tone = write_tone(&trunk.dir);
    let recordings = trunk.dir.join("recordings").display().to_string();
    let o = trunk.run_with(
        &media_trunk(&trunk, ""),
        &[],
        &["--recordings", &recordings],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(trunk.attempt().0, "voicemail");
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        report["endReasons"]["completed: left_message"], 1,
        "{report}"
    );
    assert_eq!(trunk.sipp_status(), 0);
    assert_tone_heard(&tone, heard.join().unwrap());
}

/// Half a second of a rising tone, each sample known, written as
/// `tone.wav` in `dir` (the file MEDIA_FLOW plays).
fn write_tone(dir: &Path) -> Vec<i16> {
    let tone: Vec<i16> = (0..4000)
        .map(|k| ((k as f64 / 8.0).sin() * 6000.0 * (k as f64 / 4000.0)) as i16)
        .collect();
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(dir.join("tone.wav"), spec).unwrap();
    tone.iter().for_each(|s| w.write_sample(*s).unwrap());
    w.finalize().unwrap();
    tone
}

/// The far end heard `tone`: every 20 ms of it, in order, as G.711 µ-law.
fn assert_tone_heard(tone: &[i16], packets: Vec<Packet>) {
    assert_eq!(packets.len(), 25, "half a second is 25 packets of 20 ms");
    let mut samples: Vec<i16> = Vec::new();
    for (k, (pt, seq, ts, payload)) in packets.iter().enumerate() {
        assert_eq!(*pt, 0, "PCMU, as the answer says");
        assert_eq!(*seq, packets[0].1.wrapping_add(k as u16));
        assert_eq!(*ts, packets[0].2.wrapping_add(160 * k as u32));
        samples.extend(payload);
    }
    for (sent, got) in tone.iter().zip(&samples) {
        // G.711's step is at most 1/16 of the value (and 8 near zero).
        let step = (i32::from(*sent).abs() / 16).max(8) + 8;
        assert!(
            (i32::from(*sent) - i32::from(*got)).abs() <= step,
            "{sent} became {got}"
        );
    }
}

/// A person's "Hello?" then silence is a person: the flow's `say` is
/// rendered by the trunk's tts command and heard, and `record` writes what
/// the far end says next (a longer speech) to the recordings folder.
#[test]
fn hello_is_a_person_who_hears_the_speech_and_is_recorded() {
    if !sipp_here() {
        return;
    }
    let (port, heard) = listen_rtp();
    let dir = std::env::temp_dir().join(format!("flowc-sip-pcap-hello-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = pcap_of(&dir, &["hello.wav", "greeting.wav"]);
    let mut trunk = Trunk::start(
        "hello",
        "media.xml",
        &[
            ("PCAP", &pcap),
            ("RTPPORT", &port.to_string()),
            ("ANSWERED", "unknown"),
        ],
    );
    std::fs::write(trunk.dir.join("flow.flow"), MEDIA_FLOW).unwrap();
    std::fs::copy(
        root().join("tests/sip/audio/hello.wav"),
        trunk.dir.join("tone.wav"),
    )
    .unwrap();
    let recordings = trunk.dir.join("recordings");
    let o = trunk.run_with(
        &media_trunk(&trunk, ""),
        &[],
        &["--recordings", &recordings.display().to_string()],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(trunk.attempt().0, "answered");
    assert_eq!(trunk.sipp_status(), 0);
    // "Thanks": 6 characters of 50 ms from tts.py, 15 packets.
    let packets = heard.join().unwrap();
    assert_eq!(packets.len(), 15);
    // The recording: 3 s at most, most of it speech.
    let file = recordings.join("33612345670-1.wav");
    let mut wav = hound::WavReader::open(&file).unwrap();
    assert_eq!(wav.spec().sample_rate, 8000);
    let samples: Vec<i16> = wav.samples::<i16>().map(Result::unwrap).collect();
    assert!(
        samples.len() > 8000 && samples.len() <= 3 * 8000 + 160,
        "{}",
        samples.len()
    );
    let loud = samples
        .chunks(160)
        .filter(|f| f.iter().map(|v| i64::from(v.unsigned_abs())).sum::<i64>() / 160 >= 256)
        .count();
    assert!(
        loud * 160 > samples.len() / 3,
        "{loud} loud frames of {}",
        samples.len() / 160
    );
}

/// A provider that says in a header who answered is trusted
/// (`[amd] method = "header:X-Answered-By"`), whatever the audio.
#[test]
fn a_providers_header_can_decide_voicemail() {
    if !sipp_here() {
        return;
    }
    let (port, _heard) = listen_rtp();
    let dir = std::env::temp_dir().join(format!("flowc-sip-pcap-hdr-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = pcap_of(&dir, &["hello.wav"]);
    let mut trunk = Trunk::start(
        "header",
        "media.xml",
        &[
            ("PCAP", &pcap),
            ("RTPPORT", &port.to_string()),
            ("ANSWERED", "MACHINE"),
        ],
    );
    std::fs::write(trunk.dir.join("flow.flow"), MEDIA_FLOW).unwrap();
    std::fs::write(
        trunk.dir.join("tone.wav"),
        std::fs::read(root().join("tests/sip/audio/hello.wav")).unwrap(),
    )
    .unwrap();
    let recordings = trunk.dir.join("recordings").display().to_string();
    let o = trunk.run_with(
        &media_trunk(&trunk, "[amd]\nmethod = \"header:X-Answered-By\"\n"),
        &[],
        &["--recordings", &recordings],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(trunk.attempt().0, "voicemail");
    assert_eq!(trunk.sipp_status(), 0);
}

/// What the flow needs of audio is checked before the first call: a file
/// that cannot be played, `say` without a tts command, `record` without
/// --recordings.
#[test]
fn audio_the_flow_needs_is_checked_at_start() {
    let dir = std::env::temp_dir().join(format!("flowc-sip-audio-start-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("flow.flow"), MEDIA_FLOW).unwrap();
    std::fs::write(dir.join("list.csv"), "phone\n+33612345670\n").unwrap();
    std::fs::write(dir.join("tone.wav"), "not audio").unwrap();
    let run = |trunk: &str, extra: &[&str]| {
        std::fs::write(dir.join("trunk.toml"), trunk).unwrap();
        let p = |n: &str| dir.join(n).display().to_string();
        Command::new(env!("CARGO_BIN_EXE_flowc"))
            .args(["run", &p("flow.flow"), "--contacts", &p("list.csv")])
            .args(["--dialer", "sip:127.0.0.1:9", "--trunk", &p("trunk.toml")])
            .args(["--db", &p("run.db")])
            .args(extra)
            .output()
            .unwrap()
    };
    let o = run("", &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("`play \"tone.wav\"` cannot be played"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("not a WAV file"), "{}", stderr(&o));
    std::fs::copy(
        root().join("tests/sip/audio/hello.wav"),
        dir.join("tone.wav"),
    )
    .unwrap();
    let o = run("", &[]);
    assert!(
        stderr(&o).contains("add `tts = \"espeak-ng --stdout\"`"),
        "{}",
        stderr(&o)
    );
    let o = run("tts = \"flowc-no-such-speaker\"", &[]);
    assert!(
        stderr(&o).contains("cannot run `flowc-no-such-speaker`"),
        "{}",
        stderr(&o)
    );
    let tts = format!(
        "tts = \"/usr/bin/python3 {}\"",
        root().join("tests/sip/tts.py").display()
    );
    let o = run(&tts, &[]);
    assert!(stderr(&o).contains("--recordings DIR"), "{}", stderr(&o));
    // No call was placed: nothing was stored.
    assert!(
        !dir.join("run.db").exists() || {
            let db = rusqlite::Connection::open(dir.join("run.db")).unwrap();
            db.query_row("SELECT count(*) FROM attempts", [], |r| r.get::<_, i64>(0))
                .unwrap_or(0)
                == 0
        }
    );
}

/// A key sent in a SIP INFO (`application/dtmf-relay`) is gathered (and
/// the INFO answered 200); a far end that then hangs up (its BYE, answered
/// 200) ends the next gather at once.
#[test]
fn keys_in_sip_info_and_a_far_end_that_hangs_up() {
    if !sipp_here() {
        return;
    }
    let mut trunk = Trunk::start("info", "info_bye.xml", &[]);
    std::fs::write(
        trunk.dir.join("flow.flow"),
        FLOW.replace(
            "    on answered -> end completed \"answered\"",
            "    on answered -> gather 1 digit timeout 4s {\n      \"5\" -> goto more\n      timeout -> end failed \"no_key\"\n      invalid -> end failed \"bad_key\"\n    }\n    on other -> end failed \"not_reached\"\n  }\n  step more {\n    gather 1 digit timeout 30s {\n      \"1\" -> end completed \"pressed_again\"\n      timeout -> end completed \"they_hung_up\"\n      invalid -> end failed \"bad_key\"\n    }",
        )
        .replace("    on other -> end failed \"not_reached\"\n  }\n}", "  }\n}"),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let o = trunk.run(&trunk.trunk_file(""), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // Far sooner than the second gather's 30 s.
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        report["endReasons"]["completed: they_hung_up"], 1,
        "{report}"
    );
    let db = rusqlite::Connection::open(trunk.dir.join("run.db")).unwrap();
    let keys: String = db
        .query_row("SELECT keys FROM attempts", [], |r| r.get(0))
        .unwrap();
    assert_eq!(keys, "[\"5\",null]");
    assert_eq!(trunk.sipp_status(), 0);
}

/// `transfer` sends REFER to the number (as the trunk's request URI) and
/// follows the NOTIFYs: a final 200 is `answered`, a 486 `failed`.
#[test]
fn transfers_are_refer_and_their_notifys() {
    if !sipp_here() {
        return;
    }
    for (last, want) in [("200 OK", "transferred"), ("486 Busy Here", "agent_busy")] {
        let mut trunk = Trunk::start(
            &format!("refer{}", &last[..3]),
            "refer.xml",
            &[("FINAL", last)],
        );
        std::fs::write(
            trunk.dir.join("flow.flow"),
            FLOW.replace(
                "    on answered -> end completed \"answered\"",
                "    on answered -> goto agent\n    on other -> end failed \"not_reached\"\n  }\n  step agent {\n    transfer \"+12125550199\" timeout 10s\n    on answered -> end completed \"transferred\"\n    on failed -> end completed \"agent_busy\"\n    on hangup -> end failed \"hung_up\"",
            )
            .replacen("    on other -> end failed \"not_reached\"\n  }\n}", "  }\n}", 1),
        )
        .unwrap();
        let o = trunk.run(&trunk.trunk_file(""), &[]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(
            report["endReasons"][format!("completed: {want}")],
            1,
            "{last}: {report}"
        );
        assert_eq!(trunk.sipp_status(), 0, "{last}");
    }
}

/// The README's trunk file is one flowc reads, every field of it.
#[test]
fn the_readmes_trunk_file_reads() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let start = readme
        .find("```toml\ntransport = \"udp\"")
        .expect("the trunk example")
        + 8;
    let text = &readme[start..start + readme[start..].find("```").unwrap()];
    let trunk = flowc::dialer::sip::Trunk::parse(text).unwrap();
    assert_eq!(trunk.tts.as_deref(), Some("espeak-ng --stdout"));
    assert_eq!(trunk.tls_key.as_deref(), Some("flowc.key"));
    assert_eq!(trunk.amd.greeting_ms, 1500);
    assert_eq!(
        trunk.outbound_proxy.as_deref(),
        Some("proxy.example.com:5060")
    );
}

/// `transport = "tcp"`: the call goes over one TCP connection, answered,
/// acknowledged and hung up as over UDP (sipp listening on TCP).
#[test]
fn a_call_over_tcp() {
    if !sipp_here() {
        return;
    }
    let mut trunk = Trunk::start_on("t1", "tcp", "answer.xml", &[]);
    let o = trunk.run(&trunk.trunk_file("transport = \"tcp\"\n"), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        trunk.attempt(),
        ("answered".into(), Some(200), Some("OK".into()))
    );
    assert_eq!(trunk.sipp_status(), 0, "sipp saw no ACK or BYE over TCP");
}

/// What tests/sip/mixed.xml answers a number ending in each digit.
const MIXED: [(&str, u16); 10] = [
    ("answered", 200),
    ("answered", 200),
    ("answered", 200),
    ("answered", 200),
    ("busy", 486),
    ("rejected", 603),
    ("invalid_number", 404),
    ("no_answer", 480),
    ("network_error", 503),
    ("no_answer", 487),
];

/// A campaign of every outcome while sipp loses 5% of the packets it sends
/// and receives after the 180 (see tests/sip/mixed.xml): retransmissions
/// (ours of CANCEL and BYE and ACKs of repeated final responses, sipp's of
/// final responses) make every outcome right.
#[test]
fn a_mixed_campaign_under_five_percent_loss_gets_every_outcome_right() {
    if !sipp_here() {
        return;
    }
    let _heavy = crate::one_heavy_test_at_a_time();
    const CALLS: usize = 200;
    let mut trunk = Trunk::launch(
        "mixed-lost",
        "mixed.xml",
        &[],
        &["-m", &CALLS.to_string(), "-lost", "5"],
    );
    let mut list = String::from("phone\n");
    for k in 0..CALLS {
        list.push_str(&format!("+3361{k:07}\n"));
    }
    std::fs::write(trunk.dir.join("list.csv"), list).unwrap();
    // A ring timeout past sipp's retransmissions of a lost answer (at
    // 0.2, 0.6, 1.4, 3 and 6.2 s): an answer lost up to five times still
    // arrives before our CANCEL.
    let flow = FLOW
        .replace(
            "compliance house\n",
            "compliance house\n  concurrency 100\n",
        )
        .replace("timeout 2s", "timeout 8s");
    std::fs::write(trunk.dir.join("flow.flow"), flow).unwrap();
    // T1 at its RFC 3261 value: with 50 ms, a loaded machine (CI) delays
    // the 180 of some of the hundred INVITEs sent at once past T1, flowc
    // rightly sends those INVITEs again, and sipp aborts a call whose
    // INVITE comes again once it has answered ("unexpected message"), so
    // the call rings out unanswered. A real trunk absorbs retransmissions.
    let o = trunk.run(&trunk.trunk_file_t1(500, ""), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let db = rusqlite::Connection::open(trunk.dir.join("run.db")).unwrap();
    let mut rows = db
        .prepare(
            "SELECT c.phone, a.outcome, a.sip_status FROM attempts a \
             JOIN contacts c ON c.id = a.contact",
        )
        .unwrap();
    let rows: Vec<(String, String, Option<u16>)> = rows
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows.len(), CALLS, "one attempt per contact");
    let wrong: Vec<_> = rows
        .iter()
        .filter(|(phone, outcome, status)| {
            let digit = phone.chars().last().unwrap().to_digit(10).unwrap() as usize;
            let (want, want_status) = MIXED[digit];
            // A CANCEL whose 487 was lost is given up after 64×T1: the
            // outcome is still right, with no status.
            outcome != want || status.is_some_and(|s| s != want_status)
        })
        .collect();
    assert!(wrong.is_empty(), "wrong outcomes: {wrong:?}");
    // sipp's exit status is not asserted under loss: it ignores a BYE
    // sent again after its lost 200 (a "dead call"), and an ACK it drops
    // for the campaign's last call is not sent again once flowc has ended.
    let _ = trunk.sipp_status();
}

/// TLS to the trunk: sipp over TCP behind a TLS front (Debian's sipp has
/// no TLS) with a certificate of a test CA. With the trunk file's `tls_ca`
/// naming that CA the call is answered; with the system's roots the
/// certificate is refused, and the call is a network error.
#[test]
fn a_call_over_tls_and_an_untrusted_certificate() {
    if !sipp_here() {
        return;
    }
    let mut trunk = Trunk::start_on("t1", "tls", "answer.xml", &[]);
    test_certificates(&trunk.dir);
    let (_relay, port) = tls_relay(&trunk.dir, trunk.port, None);
    trunk.port = port;
    let dir = trunk.dir.clone();
    let ca = dir.join("ca.pem").display().to_string();
    let o = trunk.run(
        &trunk.trunk_file(&format!("transport = \"tls\"\ntls_ca = \"{ca}\"\n")),
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        trunk.attempt(),
        ("answered".into(), Some(200), Some("OK".into()))
    );
    assert_eq!(trunk.sipp_status(), 0, "sipp saw no ACK or BYE over TLS");
    // The system's roots do not know the test CA: no call is placed.
    std::fs::remove_file(dir.join("run.db")).unwrap();
    let o = trunk.run(&trunk.trunk_file("transport = \"tls\"\n"), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(trunk.attempt().0, "network_error");
}

/// A trunk that asks for our certificate (mutual TLS): with the trunk
/// file's `tls_cert` and `tls_key`, signed by a CA the trunk trusts, the
/// call is answered; without them the trunk refuses the connection and the
/// call is a network error; a key file that holds no key fails the start.
#[test]
fn a_trunk_that_asks_for_our_certificate_is_shown_it() {
    if !sipp_here() {
        return;
    }
    let mut trunk = Trunk::start_on("t1", "mtls", "answer.xml", &[]);
    test_certificates(&trunk.dir);
    let dir = trunk.dir.clone();
    let (_relay, port) = tls_relay(&dir, trunk.port, Some(&dir.join("ca.pem")));
    trunk.port = port;
    let file = |name: &str| dir.join(name).display().to_string();
    let tls = format!("transport = \"tls\"\ntls_ca = \"{}\"\n", file("ca.pem"));

    let o = trunk.run(
        &trunk.trunk_file(&format!(
            "{tls}tls_cert = \"{0}\"\ntls_key = \"{0}\"\n",
            file("client.pem")
        )),
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("holds no private key in PKCS #8"),
        "{}",
        stderr(&o)
    );

    let _ = std::fs::remove_file(dir.join("run.db"));
    let o = trunk.run(&trunk.trunk_file(&tls), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(trunk.attempt().0, "network_error", "no certificate shown");

    std::fs::remove_file(dir.join("run.db")).unwrap();
    let o = trunk.run(
        &trunk.trunk_file(&format!(
            "{tls}tls_cert = \"{}\"\ntls_key = \"{}\"\n",
            file("client.pem"),
            file("client.key")
        )),
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        trunk.attempt(),
        ("answered".into(), Some(200), Some("OK".into()))
    );
    assert_eq!(trunk.sipp_status(), 0, "sipp saw no ACK or BYE over TLS");
}

/// A test CA in `dir` (`ca.pem`) and two certificates it signed: the
/// trunk's, for 127.0.0.1 (`cert.pem`, `key.pem`), and flowc's
/// (`client.pem`, `client.key`).
fn test_certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        let o = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs");
        assert!(o.status.success(), "openssl {args:?}: {}", stderr(&o));
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=flowc test CA",
    ]);
    for (name, key, out, ext) in [
        (
            "/CN=127.0.0.1",
            "key.pem",
            "cert.pem",
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
        ),
        (
            "/CN=flowc",
            "client.key",
            "client.pem",
            "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n",
        ),
    ] {
        openssl(&[
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", "leaf.csr", "-subj",
            name,
        ]);
        std::fs::write(dir.join("leaf.ext"), ext).unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            out,
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
        ]);
    }
}

/// tests/sip/tls_relay.py: a TLS front (`dir`'s `cert.pem`) for sipp on
/// TCP `target`, asking for a client certificate of `client_ca` when
/// given. Returns the relay, stopped when dropped, and its port.
fn tls_relay(dir: &Path, target: u16, client_ca: Option<&Path>) -> (Relay, u16) {
    let mut relay = Relay(
        Command::new("python3")
            .arg(root().join("tests/sip/tls_relay.py"))
            .arg(dir.join("cert.pem"))
            .arg(dir.join("key.pem"))
            .arg(target.to_string())
            .args(client_ca)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut port = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(relay.0.stdout.take().unwrap()),
        &mut port,
    )
    .unwrap();
    (
        relay,
        port.trim().parse().expect("the relay prints its port"),
    )
}

struct Relay(Child);

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A campaign in PostgreSQL dialled through SIP. `flowc run` keeps the
/// audio the flow plays in the database and plays it from there; then,
/// the campaign begun again as another machine would find it, a worker
/// without a speech command leaves it (the flow speaks) and a worker
/// without the flow's files plays the same audio from the database.
#[test]
fn a_campaign_in_postgresql_is_dialled_through_sip_by_any_worker() {
    if !sipp_here() {
        return;
    }
    let Some(server) = crate::stores::Postgres::start("sip") else {
        return;
    };
    let base = server.database("sip");
    let url = format!("{base}#voicemail");
    let dir = std::env::temp_dir().join(format!("flowc-sip-pg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = pcap_of(&dir, &["greeting.wav"]);
    let trunk_for = |rtp: u16, name: &str| {
        Trunk::start(
            name,
            "media.xml",
            &[
                ("PCAP", &pcap),
                ("RTPPORT", &rtp.to_string()),
                ("ANSWERED", "unknown"),
            ],
        )
    };
    let (port, heard) = listen_rtp();
    let mut trunk = trunk_for(port, "pg-run");
    std::fs::write(trunk.dir.join("flow.flow"), MEDIA_FLOW).unwrap();
    let tone = write_tone(&trunk.dir);
    let trunk_file = media_trunk(&trunk, "");
    let recordings = trunk.dir.join("recordings").display().to_string();
    let p = |n: &str| trunk.dir.join(n).display().to_string();
    let run = Command::new(env!("CARGO_BIN_EXE_flowc"))
        .args(["run", &p("flow.flow"), "--contacts", &p("list.csv")])
        .args(["--dialer", &format!("sip:127.0.0.1:{}", trunk.port)])
        .args(["--trunk", &trunk_file, "--recordings", &recordings])
        .args(["--db", &url, "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(
        report["endReasons"]["completed: left_message"], 1,
        "{report}"
    );
    assert_eq!(trunk.sipp_status(), 0);
    assert_tone_heard(&tone, heard.join().unwrap());

    // As a campaign begun elsewhere: nothing dialled yet, its part open.
    let mut client = crate::stores::postgres_client(&base);
    client
        .batch_execute(
            "DELETE FROM flowc_ends; DELETE FROM flowc_attempts; \
             UPDATE flowc_parts SET done = false, owner = NULL; \
             UPDATE flowc_campaigns SET state = 'running'",
        )
        .unwrap();
    let (port, heard) = listen_rtp();
    let mut trunk = trunk_for(port, "pg-worker");
    // This machine has none of the flow's files.
    assert!(!trunk.dir.join("tone.wav").exists());
    let worker = |trunk_file: &str, name: &str| {
        Command::new(env!("CARGO_BIN_EXE_flowc"))
            .args(["worker", "--db", &base, "--name", name, "--until-done"])
            .args(["--dialer", &format!("sip:127.0.0.1:{}", trunk.port)])
            .args(["--trunk", trunk_file, "--recordings", &recordings])
            .output()
            .unwrap()
    };
    let mute = worker(&trunk.trunk_file(""), "mute");
    assert_eq!(mute.status.code(), Some(0), "{}", stderr(&mute));
    assert!(
        stderr(&mute).contains("leaves the campaign \"voicemail\" to the others")
            && stderr(&mute).contains("text-to-speech"),
        "{}",
        stderr(&mute)
    );
    let dialled: i64 = client
        .query_one("SELECT count(*) FROM flowc_attempts", &[])
        .unwrap()
        .get(0);
    assert_eq!(dialled, 0, "the worker that cannot speak dialled");
    let speaking = worker(&media_trunk(&trunk, ""), "speaking");
    assert_eq!(speaking.status.code(), Some(0), "{}", stderr(&speaking));
    let (outcome, reason): (String, String) = client
        .query_one(
            "SELECT a.outcome::text, e.reason FROM flowc_attempts a JOIN flowc_ends e USING (campaign, contact)",
            &[],
        )
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(
        (outcome.as_str(), reason.as_str()),
        ("voicemail", "left_message")
    );
    assert_eq!(trunk.sipp_status(), 0);
    assert_tone_heard(&tone, heard.join().unwrap());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_200_sent_again_after_the_call_is_acked_again_and_the_call_holds_nothing() {
    use flowc::dialer::sip::{Prompts, SipDialer};
    use flowc::dialer::{Call, CallId, Dialer};
    if !sipp_here() {
        return;
    }
    let mut trunk = Trunk::start("resend", "resend_ok.xml", &[]);
    // T1 = 500 ms: RFC 6026 would keep the INVITE's transaction 32 s.
    let settings =
        flowc::dialer::sip::Trunk::parse("t1_ms = 500\nlocal = \"127.0.0.1:0\"\n").unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let dialer = SipDialer::start(
            &format!("127.0.0.1:{}", trunk.port),
            settings,
            Prompts::default(),
        )
        .await
        .unwrap();
        let id = CallId {
            contact: 0,
            attempt: 1,
        };
        let dialled = dialer
            .place(Call {
                id,
                number: "+33612345670".into(),
                caller_id: None,
                local: chrono::NaiveDate::from_ymd_opt(2027, 1, 4)
                    .unwrap()
                    .and_hms_opt(10, 0, 0)
                    .unwrap(),
                timeout_seconds: 5,
                detect_voicemail: false,
                fields: None,
            })
            .await;
        assert_eq!(dialled.outcome, flowc::ir::Outcome::Answered);
        dialer.hang_up(id).await;
        // The BYE is answered at once: the call's transactions go with it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        while dialer.transactions_held() > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the finished call still holds {} transactions",
                dialer.transactions_held()
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        // A second after the BYE sipp sends the 200 again, and ends once it
        // has its ACK again (the stack runs on its own thread meanwhile).
        assert_eq!(trunk.sipp_status(), 0, "the 200 sent again was not ACKed");
        dialer.shut_down().await;
    });
}

/// Waits until sipp listens, which it does once it has read its scenario:
/// on a loaded machine that can take seconds, and a request sent before
/// is lost.
fn wait_listening(sipp: &mut Child, port: u16) {
    let since = std::time::Instant::now();
    while !listening(port) {
        if let Some(status) = sipp.try_wait().unwrap() {
            panic!("sipp ended before it listened on port {port}: {status}");
        }
        assert!(
            since.elapsed() < std::time::Duration::from_secs(20),
            "sipp did not listen on port {port} within 20 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// True once a socket on 127.0.0.1:`port` takes UDP datagrams or listens
/// for TCP connections (read from the kernel's tables: sipp sees no probe).
fn listening(port: u16) -> bool {
    let local = format!("0100007F:{port:04X}");
    let bound = |table: &str, tcp: bool| {
        std::fs::read_to_string(table)
            .unwrap_or_default()
            .lines()
            .skip(1)
            .any(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                // TCP's state 0A is LISTEN.
                fields.get(1) == Some(&local.as_str()) && (!tcp || fields.get(3) == Some(&"0A"))
            })
    };
    bound("/proc/net/udp", false) || bound("/proc/net/tcp", true)
}
