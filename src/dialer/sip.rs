//! `--dialer sip:HOST[:PORT]`: calls through a SIP trunk or PBX over UDP, TCP
//! or TLS, with the `rsipstack` stack (RFC 3261 transactions and their
//! timers, digest authentication for 401 and 407, CANCEL, BYE) kept behind
//! the `Dialer` trait. `--trunk FILE` (TOML, [`Trunk`]) gives the rest. The
//! stack reads the network and runs its timers on a thread of its own; the
//! engine's loop makes each call's request, the SIP thread runs its
//! transactions and hangs it up, and a finished call holds nothing.
//!
//! This adapter places the call, reads its final response as an outcome,
//! cancels it at the dial's timeout, and hangs up. Each call of a flow with
//! audio has an RTP port of its own (`rtp::Media`), named in the SDP offer
//! (the others share one, `rtp::Sink`): `play` streams a
//! WAV file read at the campaign's start (or kept with a campaign in
//! PostgreSQL, for a worker), `say` the speech of the trunk's
//! text-to-speech command (once per distinct text), `gather` reads RFC 4733
//! keys and SIP INFO `application/dtmf-relay`, `record` writes what the
//! caller says to a WAV file, `detect voicemail` listens to the first
//! seconds (`amd`) or trusts a provider's header, and `transfer` sends
//! REFER and follows its NOTIFYs. A call the far end hangs up (BYE) ends
//! what the flow was doing on it.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use rsipstack::dialog::authenticate::Credential;
use rsipstack::dialog::dialog::{Dialog, DialogState};
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::invitation::InviteOption;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::platform::CancellationToken;
use rsipstack::sip::{Header, HostWithPort, StatusCode, Transport, Uri};
use rsipstack::transaction::endpoint::{EndpointInner, EndpointOption};
use rsipstack::transaction::key::{TransactionKey, TransactionRole};
use rsipstack::transaction::transaction::TransactionEvent;
use rsipstack::transport::udp::UdpConnection;
use rsipstack::transport::{SipAddr, TransportLayer};
use rsipstack::EndpointBuilder;
use serde::Deserialize;
use tokio::sync::{mpsc, watch};

use super::amd::{self, Detector, Verdict};
use super::audio;
use super::rtp::{self, Media};
use super::{Ask, Call, CallId, Dialer, Dialled, RECORD_DEFAULT_SECONDS};
use crate::ir::{self, Outcome, TransferOutcome};

/// The socket's receive buffer: a burst of a hundred INVITEs' responses
/// overflows the system's default.
const RECEIVE_BUFFER: usize = 4 * 1024 * 1024;

/// A recording ends after this much silence once the caller has spoken…
const RECORD_SILENCE: StdDuration = StdDuration::from_secs(3);
/// … or after this much if they say nothing at all.
const RECORD_NOTHING: StdDuration = StdDuration::from_secs(10);

/// The trunk file (`--trunk FILE`). Every field is optional.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Trunk {
    /// `udp`, `tcp` or `tls` (one connection to the trunk, opened at the
    /// first call and again if it closes).
    pub transport: String,
    /// `tls`: the certificates (PEM) the trunk's certificate must chain to;
    /// the system's bundle, `/etc/ssl/certs/ca-certificates.crt`, when absent.
    pub tls_ca: Option<String>,
    /// `tls`: the name the trunk's certificate must carry (and the SNI
    /// sent); the host of `--dialer sip:HOST` when absent.
    pub tls_server_name: Option<String>,
    /// `tls`: the certificate (PEM, the chain from ours up) flowc shows a
    /// trunk that asks for one (mutual TLS); with `tls_key`.
    pub tls_cert: Option<String>,
    /// `tls`: the private key (PEM: PKCS #8, PKCS #1 or SEC 1) of `tls_cert`.
    pub tls_key: Option<String>,
    /// Where requests are sent when not to the trunk itself (`HOST:PORT`).
    pub outbound_proxy: Option<String>,
    /// The domain of the request URI and of `From`; the trunk's address when absent.
    pub domain: Option<String>,
    /// The user to authenticate as (digest, for 401 and 407).
    pub username: Option<String>,
    /// The environment variable holding the password (never the password itself).
    pub password_env: Option<String>,
    /// The local address to send from (`0.0.0.0:5070`); any port when absent.
    pub local: String,
    /// The address RTP is received on; the signalling's when absent.
    pub rtp_address: Option<String>,
    /// The ports RTP may use, `"10000-20000"`; any free port when absent.
    pub rtp_ports: Option<String>,
    /// The codecs offered, in order of preference: `pcmu`, `pcma`.
    pub codecs: Vec<String>,
    /// Timer T1, in milliseconds (RFC 3261: 500).
    pub t1_ms: u64,
    /// The request URI: `{e164}` is the number with its `+`, `{number}` without.
    pub request_uri: String,
    /// Where the caller id goes: `from`, `pai` (P-Asserted-Identity) or `both`.
    pub caller_id_header: String,
    /// The text-to-speech command of `say`: the text is its last argument,
    /// and it writes a WAV file on its standard output
    /// (`"espeak-ng --stdout"`).
    pub tts: Option<String>,
    /// Answering-machine detection for `detect voicemail`.
    pub amd: amd::Settings,
}

impl Default for Trunk {
    fn default() -> Self {
        Trunk {
            transport: "udp".into(),
            tls_ca: None,
            tls_server_name: None,
            tls_cert: None,
            tls_key: None,
            outbound_proxy: None,
            domain: None,
            username: None,
            password_env: None,
            local: "0.0.0.0:0".into(),
            rtp_address: None,
            rtp_ports: None,
            codecs: vec!["pcmu".into(), "pcma".into()],
            t1_ms: 500,
            request_uri: "sip:{e164}@{domain}".into(),
            caller_id_header: "from".into(),
            tts: None,
            amd: amd::Settings::default(),
        }
    }
}

impl Trunk {
    fn transport(&self) -> Transport {
        match self.transport.as_str() {
            "tcp" => Transport::Tcp,
            "tls" => Transport::Tls,
            _ => Transport::Udp,
        }
    }

    pub fn parse(text: &str) -> Result<Trunk, String> {
        let t: Trunk = toml::from_str(text).map_err(|e| e.to_string())?;
        if !["udp", "tcp", "tls"].contains(&t.transport.as_str()) {
            return Err(format!(
                "transport = \"{}\": write \"udp\", \"tcp\" or \"tls\"",
                t.transport
            ));
        }
        if !["from", "pai", "both"].contains(&t.caller_id_header.as_str()) {
            return Err(format!(
                "caller_id_header = \"{}\": write \"from\", \"pai\" or \"both\"",
                t.caller_id_header
            ));
        }
        if !(1..=10_000).contains(&t.t1_ms) {
            return Err("t1_ms is a number of milliseconds from 1 to 10000".into());
        }
        if t.tls_cert.is_some() != t.tls_key.is_some() {
            return Err("tls_cert and tls_key go together (our certificate and its key)".into());
        }
        if t.username.is_some() != t.password_env.is_some() {
            return Err("username and password_env go together".into());
        }
        t.local.parse::<SocketAddr>().map_err(|_| {
            format!(
                "local = \"{}\": write an address and port such as \"0.0.0.0:5070\"",
                t.local
            )
        })?;
        if let Some(a) = &t.rtp_address {
            a.parse::<IpAddr>().map_err(|_| {
                format!("rtp_address = \"{a}\": write an address such as \"192.0.2.10\"")
            })?;
        }
        t.rtp_range()?;
        if t.codecs.is_empty() || t.codecs.iter().any(|c| codec_number(c).is_none()) {
            return Err(format!(
                "codecs = {:?}: list \"pcmu\" and/or \"pcma\" (G.711 µ-law, A-law)",
                t.codecs
            ));
        }
        if let Some(tts) = &t.tts {
            if tts.split_whitespace().next().is_none() {
                return Err("tts is empty: write a command such as \"espeak-ng --stdout\"".into());
            }
        }
        t.amd.check()?;
        Ok(t)
    }

    /// `rtp_ports` as a range of ports.
    fn rtp_range(&self) -> Result<Option<(u16, u16)>, String> {
        let Some(text) = &self.rtp_ports else {
            return Ok(None);
        };
        let bad = || format!("rtp_ports = \"{text}\": write a range such as \"10000-20000\"");
        let (from, to) = text.split_once('-').ok_or_else(bad)?;
        let (from, to): (u16, u16) = (
            from.trim().parse().map_err(|_| bad())?,
            to.trim().parse().map_err(|_| bad())?,
        );
        if from == 0 || from > to {
            return Err(bad());
        }
        Ok(Some((from, to)))
    }
}

/// The trunk file's `tls_cert` and `tls_key`, read and checked once at
/// start: a certificate or key that cannot be used fails the campaign's
/// start, not every call's handshake.
fn client_identity(cert: &str, key: &str) -> Result<(Vec<u8>, Vec<u8>), String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer};
    let cert_pem = std::fs::read(cert)
        .map_err(|e| format!("the trunk's tls_cert {cert} cannot be read: {e}"))?;
    let key_pem =
        std::fs::read(key).map_err(|e| format!("the trunk's tls_key {key} cannot be read: {e}"))?;
    let certificates = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the trunk's tls_cert {cert} is not PEM: {e}"))?;
    if certificates.is_empty() {
        return Err(format!(
            "the trunk's tls_cert {cert} holds no certificate (a PEM \"BEGIN CERTIFICATE\" block)"
        ));
    }
    // The forms the SIP stack reads.
    let pkcs8 = PrivatePkcs8KeyDer::pem_slice_iter(&key_pem).next();
    let pkcs1 = PrivatePkcs1KeyDer::pem_slice_iter(&key_pem).next();
    if !matches!(pkcs8, Some(Ok(_))) && !matches!(pkcs1, Some(Ok(_))) {
        return Err(format!(
            "the trunk's tls_key {key} holds no private key in PKCS #8 (\"BEGIN PRIVATE KEY\") \
             or PKCS #1 (\"BEGIN RSA PRIVATE KEY\") form; `openssl pkcs8 -topk8 -nocrypt -in {key}` \
             converts another"
        ));
    }
    Ok((cert_pem, key_pem))
}

fn codec_number(name: &str) -> Option<u8> {
    match name.to_ascii_lowercase().as_str() {
        "pcmu" => Some(0),
        "pcma" => Some(8),
        _ => None,
    }
}

/// What the flow's audio needs, made ready before the first call: a file
/// that cannot be read, a speech command that does not work or a recording
/// without a folder fails the campaign's start, not a call.
#[derive(Default)]
pub struct Prompts {
    /// `play` files by the name the flow gives, as 8 kHz samples.
    files: HashMap<String, Arc<Vec<i16>>>,
    /// Where `record` writes.
    recordings: Option<PathBuf>,
    /// The flow plays, says, gathers keys or records: its calls need an
    /// RTP port of their own.
    audio: bool,
}

impl Prompts {
    /// Reads every file the flow plays (named relative to the flow's
    /// `folder`), tries the speech command when the flow says anything, and
    /// makes the recordings folder when it records.
    pub fn prepare(
        flow: &ir::Flow,
        folder: &Path,
        trunk: &Trunk,
        recordings: Option<&Path>,
    ) -> Result<Prompts, String> {
        Prompts::ready(flow, Prompts::read(flow, folder)?, trunk, recordings)
    }

    /// No audio yet, and the folder `record` would write to: a worker's,
    /// whose campaigns bring their audio (`SipDialer::take_flow`).
    pub fn none(recordings: Option<&Path>) -> Prompts {
        Prompts {
            files: HashMap::new(),
            recordings: recordings.map(Path::to_path_buf),
            audio: false,
        }
    }

    /// The audio of every file the flow plays (named relative to the
    /// flow's `folder`), as 8 kHz samples, by the name the flow gives.
    pub fn read(flow: &ir::Flow, folder: &Path) -> Result<HashMap<String, Arc<Vec<i16>>>, String> {
        let mut files = HashMap::new();
        for a in &flow.actions() {
            if let ir::Action::Play { file } = a {
                if !files.contains_key(file) {
                    let samples = audio::load(&folder.join(file)).map_err(|e| {
                        format!("`play \"{file}\"` cannot be played: {e} (a WAV file is needed; `sox IN.mp3 OUT.wav` converts one)")
                    })?;
                    files.insert(file.clone(), Arc::new(samples));
                }
            }
        }
        Ok(files)
    }

    /// The flow's audio from `files` (read by `read`, here or where the
    /// campaign began): every file it plays must be there; the speech
    /// command is tried when it says anything, and the recordings folder
    /// made when it records.
    pub fn ready(
        flow: &ir::Flow,
        mut files: HashMap<String, Arc<Vec<i16>>>,
        trunk: &Trunk,
        recordings: Option<&Path>,
    ) -> Result<Prompts, String> {
        let actions = flow.actions();
        let played: HashSet<&str> = actions
            .iter()
            .filter_map(|a| match a {
                ir::Action::Play { file } => Some(file.as_str()),
                _ => None,
            })
            .collect();
        if let Some(missing) = played.iter().find(|f| !files.contains_key(**f)) {
            return Err(format!(
                "`play \"{missing}\"`: the audio is not with the campaign (the flowc that began it could not read the file)"
            ));
        }
        files.retain(|name, _| played.contains(name.as_str()));
        let says = actions.iter().any(|a| matches!(a, ir::Action::Say { .. }));
        let records = actions
            .iter()
            .any(|a| matches!(a, ir::Action::Record { .. }));
        let gathers = actions.iter().any(|a| matches!(a, ir::Action::Gather(_)));
        let mut prompts = Prompts {
            files,
            recordings: None,
            audio: says || records || gathers || !played.is_empty(),
        };
        if says {
            let Some(tts) = &trunk.tts else {
                return Err("the flow has `say`, and the trunk file names no text-to-speech command: add `tts = \"espeak-ng --stdout\"` (or another command that writes a WAV file)".into());
            };
            speak(tts, "flowc").map_err(|e| format!("the trunk's tts command: {e}"))?;
        }
        if records {
            let Some(dir) = recordings else {
                return Err(
                    "the flow has `record`: give the folder recordings go to with --recordings DIR"
                        .into(),
                );
            };
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("--recordings {}: {e}", dir.display()))?;
            prompts.recordings = Some(dir.to_path_buf());
        }
        Ok(prompts)
    }
}

/// Speech for `text` from the text-to-speech command, as 8 kHz samples.
fn speak(command: &str, text: &str) -> Result<Vec<i16>, String> {
    let mut words = command.split_whitespace();
    let program = words.next().unwrap_or_default();
    let out = std::process::Command::new(program)
        .args(words)
        .arg(text)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `{command}`: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{command}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    audio::read_wav(&out.stdout[..]).map_err(|e| format!("`{command}` wrote {e}"))
}

/// The outcome a final response means (`cancelled`: we sent CANCEL).
pub fn outcome_of(status: u16, has_to_tag: bool, cancelled: bool) -> Outcome {
    match status {
        200..=299 if cancelled => Outcome::NoAnswer,
        200..=299 => Outcome::Answered,
        486 | 600 => Outcome::Busy,
        487 if cancelled => Outcome::NoAnswer,
        // A 408 the far end sent (with its tag) is "no answer"; one a stack
        // made up for its own timeout is a network error.
        408 if has_to_tag => Outcome::NoAnswer,
        480 => Outcome::NoAnswer,
        603 | 607 => Outcome::Rejected,
        404 | 410 | 484 | 604 => Outcome::InvalidNumber,
        _ => Outcome::NetworkError,
    }
}

/// A key from a SIP INFO body: `Signal=5` (`application/dtmf-relay`) or
/// the key alone (`application/dtmf`).
fn info_key(body: &[u8]) -> Option<char> {
    let text = std::str::from_utf8(body).ok()?;
    let value = text
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once('=')?;
            k.trim().eq_ignore_ascii_case("signal").then_some(v)
        })
        .unwrap_or(text)
        .trim();
    let mut chars = value.chars();
    let key = chars.next()?.to_ascii_uppercase();
    (chars.next().is_none() && (key.is_ascii_digit() || "*#ABCD".contains(key))).then_some(key)
}

/// The status line of a NOTIFY's `message/sipfrag` body (`SIP/2.0 200 OK`).
fn sipfrag_status(body: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(body).ok()?;
    text.trim_start()
        .strip_prefix("SIP/2.0 ")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// An answered call, until the flow hangs up.
struct Live {
    dialog: InviteDialog,
    /// `None` when the flow does nothing with the call's audio.
    media: Option<Arc<Media>>,
    /// Becomes true when the far end hangs up.
    gone: watch::Receiver<bool>,
    /// The status lines of the NOTIFYs that follow a REFER.
    progress: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<u16>>>,
    _following: Following,
}

/// A call's place among the followed dialogs, given up when dropped.
struct Following {
    followers: Followers,
    call_id: String,
}

impl Drop for Following {
    fn drop(&mut self) {
        self.followers
            .lock()
            .expect("not poisoned")
            .remove(&self.call_id);
    }
}

/// Ends an answered call's INVITE transaction once the call is over. RFC
/// 6026 keeps it 64×T1 after the 2xx to answer the 2xx sent again with the
/// ACK sent again; the stack's table of finished transactions does that
/// from the ACK alone, and the transaction, the dialog it holds and their
/// channels (about 40 KiB a call) are freed now instead of half a minute
/// later. `invite`: the key of the INVITE's transaction (`invite_key`).
fn release_invite(endpoint: &EndpointInner, invite: Option<TransactionKey>) {
    let Some(key) = invite else {
        return;
    };
    if let Some(transaction) = endpoint.transactions.get(&key) {
        let _ = transaction.send(TransactionEvent::Terminate(key));
    }
}

/// The key of the transaction of a dialog's INVITE (the last one sent, when
/// a challenge was answered).
fn invite_key(dialog: &InviteDialog) -> Option<TransactionKey> {
    TransactionKey::from_request(&dialog.initial_request(), TransactionRole::Client).ok()
}

impl Live {
    fn parts(&self) -> Option<(Arc<Media>, watch::Receiver<bool>)> {
        Some((self.media.clone()?, self.gone.clone()))
    }
}

/// Waits until the far end has hung up (never, if it does not).
async fn hung_up(mut gone: watch::Receiver<bool>) {
    if gone.wait_for(|g| *g).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// What placing a call needs, shared with the SIP thread, where its
/// transactions run and where it is hung up.
struct Outbound {
    endpoint: Arc<EndpointInner>,
    layer: Arc<DialogLayer>,
    /// Every call's dialog reports to `follow` through this channel.
    states: mpsc::UnboundedSender<DialogState>,
    followers: Followers,
    /// Where requests go: the trunk, or its outbound proxy.
    destination: SocketAddr,
    contact: Uri,
    domain: String,
    trunk: Trunk,
    credential: Option<Credential>,
    t1: StdDuration,
    rtp_ip: IpAddr,
    rtp_ports: Option<(u16, u16)>,
    /// The RTP port of calls without audio.
    sink: rtp::Sink,
    /// The SIP thread's runtime: each call's transactions, RTP and BYE
    /// run there, the flow's steps on the engine's.
    sip: tokio::runtime::Handle,
}

/// A placed call: its outcome, the final response's status and reason, and
/// the call itself when it was answered.
type Placed = (Outcome, Option<(u16, String)>, Option<Live>);

pub struct SipDialer {
    /// Kept for as long as the dialer: its tasks stop with `cancel`.
    _endpoint: rsipstack::transaction::endpoint::Endpoint,
    out: Arc<Outbound>,
    /// The audio of the flow being run (a worker's next campaign brings its own).
    prompts: RefCell<Prompts>,
    /// The folder given for recordings, whichever flow is run.
    recordings: Option<PathBuf>,
    /// Speech already rendered, by text (`None`: the command failed for it).
    speech: RefCell<HashMap<String, Option<Arc<Vec<i16>>>>>,
    calls: RefCell<HashMap<CallId, Live>>,
    /// BYEs under way: the stack stops only once they are done.
    byes: RefCell<Vec<tokio::task::JoinHandle<()>>>,
    cancel: CancellationToken,
}

/// `HOST` of `HOST[:PORT]` (`[::1]:5061` gives `::1`).
fn host_of(target: &str) -> &str {
    if let Some(rest) = target.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match target.split_once(':') {
        Some((host, port)) if !port.contains(':') => host,
        _ => target,
    }
}

/// `HOST[:PORT]`'s address; the port `default` when absent (5060, or 5061
/// for TLS).
async fn resolve(what: &str, host: &str, default: u16) -> Result<SocketAddr, String> {
    let with_port = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:{default}")
    };
    let found = tokio::net::lookup_host(&with_port)
        .await
        .map_err(|e| format!("{what}: {e}"))?
        .next();
    found.ok_or_else(|| format!("{what}: no address"))
}

/// Collects the running thread's heap every second until `stop`.
async fn collect_until(stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(StdDuration::from_secs(1)) => crate::allocator::collect(),
        }
    }
}

/// The SIP stack over the trunk's transport, started in the running
/// runtime: its endpoint, dialog layer and Contact.
async fn stack(
    trunk: &Trunk,
    tls: bool,
    target: &str,
    cancel: CancellationToken,
) -> Result<
    (
        rsipstack::transaction::endpoint::Endpoint,
        Arc<DialogLayer>,
        Uri,
    ),
    String,
> {
    let local: SocketAddr = trunk.local.parse().expect("checked by Trunk::parse");
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(local),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )
    .map_err(|e| e.to_string())?;
    // Best effort: the system may cap it (net.core.rmem_max).
    let _ = socket.set_recv_buffer_size(RECEIVE_BUFFER);
    socket.set_nonblocking(true).map_err(|e| e.to_string())?;
    socket
        .bind(&local.into())
        .map_err(|e| format!("cannot bind {local}: {e}"))?;
    let udp = tokio::net::UdpSocket::from_std(socket.into()).map_err(|e| e.to_string())?;
    let connection = UdpConnection::from_socket(Arc::new(udp), None, Some(cancel.child_token()))
        .await
        .map_err(|e| e.to_string())?;
    let transport = TransportLayer::new(cancel.clone());
    transport.add_transport(connection.into());
    if tls {
        let ca = trunk
            .tls_ca
            .as_deref()
            .unwrap_or("/etc/ssl/certs/ca-certificates.crt");
        let pem = std::fs::read(ca)
            .map_err(|e| format!("the trunk's tls_ca {ca} cannot be read: {e}"))?;
        let (client_cert, client_key) = match (&trunk.tls_cert, &trunk.tls_key) {
            (Some(cert), Some(key)) => {
                let (cert, key) = client_identity(cert, key)?;
                (Some(cert), Some(key))
            }
            _ => (None, None),
        };
        transport.set_tls_config(rsipstack::transport::tls::TlsConfig {
            ca_certs: Some(pem),
            client_cert,
            client_key,
            sni_hostname: Some(match &trunk.tls_server_name {
                Some(name) => name.clone(),
                None => host_of(target).to_string(),
            }),
            ..Default::default()
        });
    }
    let t1 = StdDuration::from_millis(trunk.t1_ms);
    let option = EndpointOption {
        t1,
        t1x64: t1 * 64,
        ..Default::default()
    };
    let endpoint = EndpointBuilder::new()
        .with_cancel_token(cancel.clone())
        .with_transport_layer(transport)
        .with_option(option)
        .with_user_agent(concat!("flowc/", env!("CARGO_PKG_VERSION")))
        .build();
    let local_addr = endpoint
        .get_addrs()
        .first()
        .cloned()
        .ok_or("the SIP stack has no local address")?;
    let contact = Uri {
        scheme: Some(rsipstack::sip::Scheme::Sip),
        auth: None,
        host_with_port: local_addr.addr.clone(),
        params: match trunk.transport() {
            Transport::Udp => vec![],
            t => vec![rsipstack::sip::Param::Transport(t)],
        },
        headers: vec![],
    };
    let layer = Arc::new(DialogLayer::new(endpoint.inner.clone()));
    let mut incoming = endpoint
        .incoming_transactions()
        .map_err(|e| e.to_string())?;
    // The stack's own loop, and requests from the far end (BYE, INFO,
    // NOTIFY), each in its own task: a dialog's answer may wait on the
    // call's own task.
    let inner = endpoint.inner.clone();
    tokio::spawn(async move {
        let _ = inner.serve().await;
    });
    let in_dialogs = layer.clone();
    tokio::spawn(async move {
        while let Some(mut tx) = incoming.recv().await {
            let layer = in_dialogs.clone();
            tokio::spawn(async move {
                match layer.match_dialog(&tx) {
                    Some(Dialog::Invite(mut d)) => {
                        let _ = d.handle(&mut tx).await;
                        if matches!(d.state(), DialogState::Terminated(..)) {
                            layer.remove_dialog(&d.id());
                        }
                    }
                    _ => {
                        let _ = tx.reply(StatusCode::CallTransactionDoesNotExist).await;
                    }
                }
            });
        }
    });
    Ok((endpoint, layer, contact))
}

impl SipDialer {
    /// Binds the local socket and starts the stack on a thread of its own;
    /// calls are made from the running tokio runtime (the engine's).
    /// `target`: `HOST[:PORT]` (5060 when absent, 5061 for TLS).
    pub async fn start(target: &str, trunk: Trunk, prompts: Prompts) -> Result<SipDialer, String> {
        let tls = trunk.transport() == Transport::Tls;
        let port = if tls { 5061 } else { 5060 };
        let target_addr = resolve(&format!("--dialer sip:{target}"), target, port).await?;
        let destination = match &trunk.outbound_proxy {
            Some(proxy) => {
                resolve(&format!("the trunk's outbound_proxy {proxy}"), proxy, port).await?
            }
            None => target_addr,
        };
        let credential = match (&trunk.username, &trunk.password_env) {
            (Some(user), Some(var)) => Some(Credential {
                username: user.clone(),
                password: std::env::var(var).map_err(|_| {
                    format!("the trunk's password_env names {var}, which is not set")
                })?,
                realm: None,
                auth_username: None,
            }),
            _ => None,
        };
        // The stack runs on its own thread (its socket, its timers, the
        // far end's requests), beside the engine's: the engine's loop
        // creates the calls, the stack reads and answers the network.
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        std::thread::Builder::new()
            .name("sip".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a current-thread runtime starts");
                let _ = handle_tx.send(rt.handle().clone());
                rt.block_on(collect_until(stop));
            })
            .map_err(|e| format!("cannot start the SIP thread: {e}"))?;
        let sip = handle_rx
            .recv()
            .map_err(|_| "the SIP thread stopped".to_string())?;
        // Each thread's heap takes back, now and then, what the other
        // freed of it: an idle heap keeps it (10,000 calls left 40 MiB).
        tokio::spawn(collect_until(cancel.clone()));
        let (endpoint, layer, contact) = {
            let trunk = trunk.clone();
            let target = target.to_string();
            let cancel = cancel.clone();
            sip.spawn(async move { stack(&trunk, tls, &target, cancel).await })
                .await
                .map_err(|e| e.to_string())??
        };
        let t1 = StdDuration::from_millis(trunk.t1_ms);
        let domain = trunk
            .domain
            .clone()
            .unwrap_or_else(|| target_addr.to_string());
        let rtp_ip = match &trunk.rtp_address {
            Some(a) => a.parse().expect("checked by Trunk::parse"),
            None => contact
                .host_with_port
                .host
                .to_string()
                .parse()
                .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
        };
        let rtp_ports = trunk.rtp_range()?;
        let sink = sip
            .spawn(rtp::Sink::bind(rtp_ip, rtp_ports))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot open an RTP port: {e}"))?;
        let (states, dialogs) = mpsc::unbounded_channel();
        let followers = Followers::default();
        sip.spawn(follow(dialogs, followers.clone()));
        Ok(SipDialer {
            out: Arc::new(Outbound {
                endpoint: endpoint.inner.clone(),
                layer,
                states,
                followers,
                destination,
                contact,
                domain,
                trunk,
                credential,
                t1,
                rtp_ip,
                rtp_ports,
                sink,
                sip,
            }),
            _endpoint: endpoint,
            recordings: prompts.recordings.clone(),
            prompts: RefCell::new(prompts),
            speech: RefCell::new(HashMap::new()),
            calls: RefCell::new(HashMap::new()),
            byes: RefCell::new(Vec::new()),
            cancel,
        })
    }

    /// Gets ready for another flow (a worker's next campaign): its audio
    /// from `files`, as the campaign kept it. Err: this dialer cannot run
    /// the flow (a file missing, no speech command, no recordings folder).
    pub fn take_flow(
        &self,
        flow: &ir::Flow,
        files: HashMap<String, Arc<Vec<i16>>>,
    ) -> Result<(), String> {
        let prompts = Prompts::ready(flow, files, &self.out.trunk, self.recordings.as_deref())?;
        *self.prompts.borrow_mut() = prompts;
        Ok(())
    }

    /// The SIP transactions the stack holds: those of calls being placed
    /// or hung up (a finished call holds none).
    pub fn transactions_held(&self) -> usize {
        self.out.endpoint.transactions.len()
    }

    /// Stops the stack, once the BYEs under way are answered (or abandoned
    /// after 64×T1).
    pub async fn shut_down(&self) {
        let byes = std::mem::take(&mut *self.byes.borrow_mut());
        for bye in byes {
            let _ = tokio::time::timeout(self.out.t1 * 64, bye).await;
        }
        self.cancel.cancel();
    }
}

impl Outbound {
    fn request_uri(&self, e164: &str) -> Result<Uri, String> {
        let text = self
            .trunk
            .request_uri
            .replace("{e164}", e164)
            .replace("{number}", e164.trim_start_matches('+'))
            .replace("{domain}", &self.domain);
        Uri::try_from(text.as_str()).map_err(|e| format!("the request URI {text}: {e}"))
    }

    /// An SDP offer: the trunk's G.711 codecs, 20 ms frames,
    /// telephone-events, on the call's RTP port.
    fn offer(&self, port: u16) -> Vec<u8> {
        let host = self.rtp_ip.to_string();
        let session = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let codecs: Vec<u8> = self
            .trunk
            .codecs
            .iter()
            .filter_map(|c| codec_number(c))
            .collect();
        let formats: Vec<String> = codecs.iter().map(u8::to_string).collect();
        let maps: String = codecs
            .iter()
            .map(|c| {
                let name = if *c == 0 { "PCMU" } else { "PCMA" };
                format!("a=rtpmap:{c} {name}/8000\r\n")
            })
            .collect();
        format!(
            "v=0\r\no=flowc {session} {session} IN IP4 {host}\r\ns=flowc\r\nc=IN IP4 {host}\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP {formats} {pt}\r\n{maps}\
             a=rtpmap:{pt} telephone-event/8000\r\na=fmtp:{pt} 0-16\r\na=ptime:20\r\na=sendrecv\r\n",
            formats = formats.join(" "),
            pt = rtp::EVENT_PT
        )
        .into_bytes()
    }

    /// Places the call and waits for its outcome; `audio`: the flow plays,
    /// says, hears or records something on it. The request is made here,
    /// on the engine's thread; the INVITE's transaction and the call's RTP
    /// run on the SIP thread (the two threads share the work of a call).
    async fn invite(&self, call: Call, audio: bool) -> Result<Placed, String> {
        let callee = self.request_uri(&call.number)?;
        let media = if audio || call.detect_voicemail {
            let bind = Media::bind(self.rtp_ip, self.rtp_ports);
            Some(Arc::new(
                self.sip
                    .spawn(bind)
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| format!("cannot open an RTP port: {e}"))?,
            ))
        } else {
            None
        };
        let rtp_port = media.as_ref().map_or(self.sink.port(), |m| m.port());
        let from_user = call
            .caller_id
            .as_deref()
            .filter(|_| self.trunk.caller_id_header != "pai")
            .map(|c| c.trim_start_matches('+').to_string())
            .or_else(|| self.trunk.username.clone())
            .unwrap_or_else(|| "flowc".into());
        let caller = Uri::try_from(format!("sip:{from_user}@{}", self.domain).as_str())
            .map_err(|e| format!("the caller URI: {e}"))?;
        let mut headers = Vec::new();
        if let (Some(id), "pai" | "both") = (&call.caller_id, self.trunk.caller_id_header.as_str())
        {
            headers.push(Header::Other(
                "P-Asserted-Identity".into(),
                format!("<sip:{}@{}>", id, self.domain),
            ));
        }
        let option = InviteOption {
            callee,
            caller,
            contact: self.contact.clone(),
            destination: Some(SipAddr::new(
                self.trunk.transport(),
                HostWithPort::from(self.destination),
            )),
            content_type: Some("application/sdp".into()),
            offer: Some(self.offer(rtp_port)),
            credential: self.credential.clone(),
            headers: (!headers.is_empty()).then_some(headers),
            ..Default::default()
        };
        let (dialog, mut handle) = {
            // The stack's tasks for this call are spawned on the SIP thread.
            let _sip = self.sip.enter();
            self.layer
                .do_invite_async(option, self.states.clone())
                .map_err(|e| e.to_string())?
        };
        // Followed before the call is answered: only the INVITE's own
        // progress (its 1xx, its final response), which the flow does not
        // follow, may be reported first.
        let (gone_tx, gone) = watch::channel(false);
        let (progress_tx, progress) = mpsc::unbounded_channel();
        let call_id = dialog.id().call_id;
        self.followers.lock().expect("not poisoned").insert(
            call_id.clone(),
            Follower {
                media: media.clone(),
                gone: gone_tx,
                progress: progress_tx,
            },
        );
        let following = Following {
            followers: self.followers.clone(),
            call_id,
        };
        let ring = tokio::time::sleep(StdDuration::from_secs(call.timeout_seconds));
        tokio::pin!(ring);
        let mut cancelled = false;
        let result = tokio::select! {
            r = &mut handle => r,
            _ = &mut ring => {
                cancelled = true;
                let _ = dialog.cancel().await;
                // The CANCEL's answer and the INVITE's 487 come within 64×T1.
                match tokio::time::timeout(self.t1 * 64, &mut handle).await {
                    Ok(r) => r,
                    Err(_) => {
                        handle.abort();
                        return Ok((Outcome::NoAnswer, None, None));
                    }
                }
            }
        };
        let (_, response) = result
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let Some(response) = response else {
            // No final response: Timer B.
            return Ok((Outcome::NetworkError, None, None));
        };
        let status = u16::from(response.status_code.clone());
        let has_tag = rsipstack::sip::prelude::HeadersExt::to_header(&response)
            .ok()
            .and_then(|t| t.tag().ok().flatten())
            .is_some();
        let mut outcome = outcome_of(status, has_tag, cancelled);
        // The phrase alone ("Busy Here"), without the code before it.
        let text = response.status_code.to_string();
        let reason = text
            .strip_prefix(&format!("{status} "))
            .unwrap_or(&text)
            .to_string();
        if outcome == Outcome::Answered {
            if let Some(media) = &media {
                media.answered(&response.body);
                // `detect voicemail` always has the call's media.
                if call.detect_voicemail && self.is_machine(&response, media, &gone).await {
                    outcome = Outcome::Voicemail;
                }
            }
            let live = Live {
                dialog,
                media,
                gone,
                progress: Arc::new(tokio::sync::Mutex::new(progress)),
                _following: following,
            };
            return Ok((outcome, Some((status, reason)), Some(live)));
        }
        Ok((outcome, Some((status, reason)), None))
    }

    /// `detect voicemail`: the provider's header, or the first seconds of
    /// what the far end sends.
    async fn is_machine(
        &self,
        response: &rsipstack::sip::Response,
        media: &Media,
        gone: &watch::Receiver<bool>,
    ) -> bool {
        let settings = &self.trunk.amd;
        if let Some(name) = settings.header() {
            return response.headers.iter().any(|h| {
                let text = h.to_string();
                text.split_once(':').is_some_and(|(n, v)| {
                    n.trim().eq_ignore_ascii_case(name) && amd::header_says_machine(v)
                })
            });
        }
        let mut audio = media.listen();
        let mut detector = Detector::new(settings.clone());
        let mut pending: Vec<i16> = Vec::new();
        // Frames are counted as they come; the clock only bounds a far end
        // that sends nothing at all.
        let limit = tokio::time::sleep(StdDuration::from_millis(
            u64::from(settings.total_ms) + 1000,
        ));
        tokio::pin!(limit);
        let verdict = loop {
            tokio::select! {
                got = audio.recv() => {
                    let Some(samples) = got else { break Verdict::NotSure };
                    pending.extend(samples);
                    let mut decided = None;
                    while pending.len() >= 160 && decided.is_none() {
                        let frame: Vec<i16> = pending.drain(..160).collect();
                        decided = detector.feed(&frame);
                    }
                    if let Some(v) = decided {
                        break v;
                    }
                }
                _ = &mut limit => break Verdict::NotSure,
                _ = hung_up(gone.clone()) => break Verdict::NotSure,
            }
        };
        verdict.is_machine()
    }
}

impl SipDialer {
    /// The call's media and hang-up signal, while it is connected.
    fn live(&self, call: CallId) -> Option<(Arc<Media>, watch::Receiver<bool>)> {
        self.calls.borrow().get(&call).and_then(Live::parts)
    }

    /// Speech for `text`, rendered once per distinct text.
    async fn speech(&self, text: &str) -> Option<Arc<Vec<i16>>> {
        if let Some(done) = self.speech.borrow().get(text) {
            return done.clone();
        }
        let command = self.out.trunk.tts.clone()?;
        let owned = text.to_string();
        let rendered = tokio::task::spawn_blocking(move || speak(&command, &owned))
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
        let samples = match rendered {
            Ok(s) => Some(Arc::new(s)),
            Err(e) => {
                eprintln!("warning: `say \"{text}\"` is not spoken: {e}");
                None
            }
        };
        self.speech
            .borrow_mut()
            .insert(text.to_string(), samples.clone());
        samples
    }

    /// Plays samples on a call, stopping if the far end hangs up.
    async fn play_samples(&self, call: CallId, samples: Option<Arc<Vec<i16>>>) {
        let (Some((media, gone)), Some(samples)) = (self.live(call), samples) else {
            return;
        };
        tokio::select! {
            _ = media.play(&samples) => {}
            _ = hung_up(gone) => {}
        }
    }
}

/// What a call's dialog tells the flow: INFO keys go to its media, NOTIFY
/// status lines to whoever waits on a transfer, and its end is signalled.
struct Follower {
    media: Option<Arc<Media>>,
    gone: watch::Sender<bool>,
    progress: mpsc::UnboundedSender<u16>,
}

/// The calls whose dialogs are followed, by Call-ID.
type Followers = Arc<Mutex<HashMap<String, Follower>>>;

/// Follows every call's dialog from one channel (one task and one channel
/// for all calls, not one of each per call). Requests the flow has no use
/// for are answered by the stack (501).
async fn follow(mut states: mpsc::UnboundedReceiver<DialogState>, followers: Followers) {
    while let Some(state) = states.recv().await {
        let call = &state.id().call_id;
        match &state {
            DialogState::Info(_, request, handle) => {
                if let Some(key) = info_key(&request.body) {
                    let media = followers
                        .lock()
                        .expect("not poisoned")
                        .get(call)
                        .and_then(|f| f.media.clone());
                    if let Some(media) = media {
                        media.press(key);
                    }
                }
                let _ = handle.reply(StatusCode::OK).await;
            }
            DialogState::Notify(_, request, handle) => {
                if let Some(status) = sipfrag_status(&request.body) {
                    if let Some(f) = followers.lock().expect("not poisoned").get(call) {
                        let _ = f.progress.send(status);
                    }
                }
                let _ = handle.reply(StatusCode::OK).await;
            }
            DialogState::Options(_, _, handle) => {
                let _ = handle.reply(StatusCode::OK).await;
            }
            DialogState::Terminated(..) => {
                let ended = followers.lock().expect("not poisoned").remove(call);
                if let Some(f) = ended {
                    let _ = f.gone.send(true);
                }
            }
            _ => {}
        }
    }
}

impl Dialer for SipDialer {
    async fn place(&self, call: Call) -> Dialled {
        let started = Instant::now();
        let id = call.id;
        let audio = self.prompts.borrow().audio;
        let (outcome, sip, live) = match self.out.invite(call, audio).await {
            Ok(placed) => placed,
            Err(why) => (Outcome::NetworkError, Some((0, why)), None),
        };
        if let Some(live) = live {
            self.calls.borrow_mut().insert(id, live);
        }
        Dialled {
            outcome,
            duration: chrono::Duration::from_std(started.elapsed()).unwrap_or_default(),
            sip,
        }
    }

    async fn gather(&self, call: CallId, ask: Ask) -> Option<String> {
        let (media, gone) = self.live(call)?;
        tokio::select! {
            keys = media.keys(ask.digits, StdDuration::from_secs(ask.timeout_seconds)) => keys,
            _ = hung_up(gone) => None,
        }
    }

    async fn say(&self, call: CallId, text: String) {
        if self.live(call).is_none() {
            return;
        }
        let samples = self.speech(&text).await;
        self.play_samples(call, samples).await;
    }

    async fn play(&self, call: CallId, file: String) {
        let samples = self.prompts.borrow().files.get(&file).cloned();
        self.play_samples(call, samples).await;
    }

    async fn record(&self, call: CallId, file: String, max_seconds: Option<u64>) {
        let folder = self.prompts.borrow().recordings.clone();
        let (Some((media, gone)), Some(folder)) = (self.live(call), folder) else {
            return;
        };
        let mut audio = media.listen();
        let threshold = u64::from(self.out.trunk.amd.silence_threshold);
        let limit = tokio::time::sleep(StdDuration::from_secs(
            max_seconds.unwrap_or(RECORD_DEFAULT_SECONDS),
        ));
        tokio::pin!(limit);
        let mut samples: Vec<i16> = Vec::new();
        let mut spoke = false;
        let mut quiet = 0usize;
        loop {
            tokio::select! {
                got = audio.recv() => {
                    let Some(chunk) = got else { break };
                    let energy = chunk.iter().map(|v| u64::from(v.unsigned_abs())).sum::<u64>()
                        / chunk.len().max(1) as u64;
                    if energy >= threshold {
                        spoke = true;
                        quiet = 0;
                    } else {
                        quiet += chunk.len();
                    }
                    samples.extend(chunk);
                    let silence = StdDuration::from_millis(quiet as u64 * 1000 / u64::from(audio::RATE));
                    if silence >= if spoke { RECORD_SILENCE } else { RECORD_NOTHING } {
                        break;
                    }
                }
                _ = &mut limit => break,
                _ = hung_up(gone.clone()) => break,
            }
        }
        drop(audio);
        let path = folder.join(&file);
        if let Err(e) = audio::write_wav(&path, &samples) {
            eprintln!("warning: the recording {file} is lost: {e}");
        }
    }

    async fn transfer(&self, call: CallId, number: String, timeout: u64) -> TransferOutcome {
        let Some((dialog, gone, progress)) = self
            .calls
            .borrow()
            .get(&call)
            .map(|l| (l.dialog.clone(), l.gone.clone(), l.progress.clone()))
        else {
            return TransferOutcome::Hangup;
        };
        let Ok(target) = self.out.request_uri(&number) else {
            return TransferOutcome::Failed;
        };
        let work = async {
            // RFC 3515: the REFER is accepted (202), then NOTIFYs carry the
            // new call's progress as a sipfrag status line.
            match dialog.refer(target, None, None).await {
                Ok(Some(r)) if (200..300).contains(&u16::from(r.status_code.clone())) => {}
                _ => return TransferOutcome::Failed,
            }
            let mut progress = progress.lock().await;
            while let Some(status) = progress.recv().await {
                match status {
                    100..=199 => continue,
                    200..=299 => return TransferOutcome::Answered,
                    _ => return TransferOutcome::Failed,
                }
            }
            TransferOutcome::Failed
        };
        tokio::select! {
            t = work => t,
            _ = hung_up(gone) => TransferOutcome::Hangup,
            _ = tokio::time::sleep(StdDuration::from_secs(timeout)) => TransferOutcome::Failed,
        }
    }

    async fn hang_up(&self, call: CallId) {
        let live = self.calls.borrow_mut().remove(&call);
        if let Some(live) = live {
            let out = self.out.clone();
            let invite = invite_key(&live.dialog);
            if *live.gone.borrow() {
                // They hung up first: nothing to end.
                out.layer.remove_dialog(&live.dialog.id());
                release_invite(&out.endpoint, invite);
                return;
            }
            let dialog = live.dialog;
            // Never waits on the BYE's reply; abandoned after 64×T1 by the stack.
            let bye = self.out.sip.spawn(async move {
                let _ = dialog.bye().await;
                out.layer.remove_dialog(&dialog.id());
                release_invite(&out.endpoint, invite);
            });
            let mut byes = self.byes.borrow_mut();
            byes.retain(|b| !b.is_finished());
            byes.push(bye);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_transfer_progress_from_bodies() {
        assert_eq!(info_key(b"Signal=5\r\nDuration=160\r\n"), Some('5'));
        assert_eq!(info_key(b"Signal= #\r\n"), Some('#'));
        assert_eq!(info_key(b"*"), Some('*'));
        assert_eq!(info_key(b"Signal=55"), None);
        assert_eq!(info_key(b"Duration=160"), None);
        assert_eq!(sipfrag_status(b"SIP/2.0 100 Trying\r\n"), Some(100));
        assert_eq!(sipfrag_status(b"SIP/2.0 486 Busy Here"), Some(486));
        assert_eq!(sipfrag_status(b"hello"), None);
    }

    /// Calls get an RTP port of their own when the flow does something
    /// with their audio; the others share the dialer's sink.
    #[test]
    fn calls_of_a_flow_with_audio_have_their_own_rtp_port() {
        let flow = |then: &str| {
            let text = format!(
                "contact {{ phone: phone }}\ncalendar always {{\n  hours mon-sun 08:00-20:00\n}}\n\
                 compliance house {{\n  max attempts 3 per 24h\n}}\n\
                 flow f {{\n  timezone \"UTC\"\n  calendar always\n  compliance house\n  step call {{\n    \
                 dial contact.phone timeout 20s\n    on answered -> {{\n      {then}\n    }}\n    \
                 on other -> end failed\n  }}\n}}\n"
            );
            let compiled = crate::check::check_source("f.flow", &text);
            let program = compiled
                .program
                .unwrap_or_else(|| panic!("{:?}", compiled.diagnostics));
            program.flow.expect("a flow")
        };
        let trunk = Trunk::default();
        let audio = |then: &str| {
            let recordings = std::env::temp_dir();
            Prompts::ready(&flow(then), HashMap::new(), &trunk, Some(&recordings))
                .map(|p| p.audio)
                .unwrap_or_else(|e| panic!("{then}: {e}"))
        };
        assert!(!audio("flag \"reached\"\n      end completed"));
        assert!(!audio(
            "transfer \"+33612345678\" timeout 30s\n      on answered -> end completed\n      on other -> end failed"
        ));
        assert!(audio(
            "gather 1 digit timeout 5s {\n        \"1\" -> end completed\n        timeout -> end failed\n        invalid -> end failed\n      }"
        ));
        assert!(audio("record max 3s as note\n      end completed"));
    }

    #[test]
    fn trunk_files_are_checked() {
        let t = Trunk::parse("rtp_ports = \"10000-10100\"\ncodecs = [\"pcma\"]\ntts = \"espeak-ng --stdout\"\n[amd]\nmethod = \"header:X-Answered-By\"\ngreeting_ms = 1200\n").unwrap();
        assert_eq!(t.rtp_range().unwrap(), Some((10000, 10100)));
        assert_eq!(t.amd.greeting_ms, 1200);
        assert!(Trunk::parse("rtp_ports = \"20-10\"")
            .unwrap_err()
            .contains("rtp_ports"));
        assert!(Trunk::parse("codecs = [\"opus\"]")
            .unwrap_err()
            .contains("pcmu"));
        assert!(Trunk::parse("[amd]\nmethod = \"guess\"")
            .unwrap_err()
            .contains("header:NAME"));
    }
}
