//! `--dialer sip:HOST[:PORT]`: calls through a SIP trunk or PBX over UDP,
//! with the `rsipstack` stack (RFC 3261 transactions and their timers, digest
//! authentication for 401 and 407, CANCEL, BYE) kept behind the `Dialer`
//! trait. `--trunk FILE` (TOML, [`Trunk`]) gives the rest.
//!
//! This adapter places the call, reads its final response as an outcome,
//! cancels it at the dial's timeout, and hangs up. Each call has an RTP
//! port of its own (`rtp::Media`), named in the SDP offer: `gather` reads
//! RFC 4733 keys there. `say`, `play`, `record` and `transfer` are not
//! carried out on SIP calls yet (a transfer fails).

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use rsipstack::dialog::authenticate::Credential;
use rsipstack::dialog::dialog::Dialog;
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::invitation::InviteOption;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::platform::CancellationToken;
use rsipstack::sip::{Header, HostWithPort, StatusCode, Transport, Uri};
use rsipstack::transaction::endpoint::EndpointOption;
use rsipstack::transport::udp::UdpConnection;
use rsipstack::transport::{SipAddr, TransportLayer};
use rsipstack::EndpointBuilder;
use serde::Deserialize;

use super::rtp::{self, Media};
use super::{Ask, Call, CallId, Dialer, Dialled};
use crate::ir::{Outcome, TransferOutcome};

/// The socket's receive buffer: a burst of a hundred INVITEs' responses
/// overflows the system's default.
const RECEIVE_BUFFER: usize = 4 * 1024 * 1024;

/// The trunk file (`--trunk FILE`). Every field is optional.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Trunk {
    /// `udp` (the only transport built so far).
    pub transport: String,
    /// The domain of the request URI and of `From`; the trunk's address when absent.
    pub domain: Option<String>,
    /// The user to authenticate as (digest, for 401 and 407).
    pub username: Option<String>,
    /// The environment variable holding the password (never the password itself).
    pub password_env: Option<String>,
    /// The local address to send from (`0.0.0.0:5070`); any port when absent.
    pub local: String,
    /// Timer T1, in milliseconds (RFC 3261: 500).
    pub t1_ms: u64,
    /// The request URI: `{e164}` is the number with its `+`, `{number}` without.
    pub request_uri: String,
    /// Where the caller id goes: `from`, `pai` (P-Asserted-Identity) or `both`.
    pub caller_id_header: String,
}

impl Default for Trunk {
    fn default() -> Self {
        Trunk {
            transport: "udp".into(),
            domain: None,
            username: None,
            password_env: None,
            local: "0.0.0.0:0".into(),
            t1_ms: 500,
            request_uri: "sip:{e164}@{domain}".into(),
            caller_id_header: "from".into(),
        }
    }
}

impl Trunk {
    pub fn parse(text: &str) -> Result<Trunk, String> {
        let t: Trunk = toml::from_str(text).map_err(|e| e.to_string())?;
        if t.transport != "udp" {
            return Err(format!(
                "transport = \"{}\": only \"udp\" is built so far",
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
        if t.username.is_some() != t.password_env.is_some() {
            return Err("username and password_env go together".into());
        }
        t.local.parse::<SocketAddr>().map_err(|_| {
            format!(
                "local = \"{}\": write an address and port such as \"0.0.0.0:5070\"",
                t.local
            )
        })?;
        Ok(t)
    }
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

pub struct SipDialer {
    /// Kept for as long as the dialer: its tasks stop with `cancel`.
    _endpoint: rsipstack::transaction::endpoint::Endpoint,
    layer: Arc<DialogLayer>,
    target: SocketAddr,
    contact: Uri,
    domain: String,
    trunk: Trunk,
    credential: Option<Credential>,
    t1: StdDuration,
    /// Answered calls and their media, until the flow hangs up.
    calls: RefCell<HashMap<CallId, (InviteDialog, Arc<Media>)>>,
    /// BYEs under way: the stack stops only once they are done.
    byes: RefCell<Vec<tokio::task::JoinHandle<()>>>,
    cancel: CancellationToken,
}

impl SipDialer {
    /// Binds the local socket and starts the stack inside the running tokio
    /// runtime. `target`: `HOST[:PORT]` (5060 when absent).
    pub async fn start(target: &str, trunk: Trunk) -> Result<SipDialer, String> {
        let with_port = if target.contains(':') {
            target.to_string()
        } else {
            format!("{target}:5060")
        };
        let target_addr: SocketAddr = tokio::net::lookup_host(&with_port)
            .await
            .map_err(|e| format!("--dialer sip:{target}: {e}"))?
            .next()
            .ok_or_else(|| format!("--dialer sip:{target}: no address"))?;
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
        let cancel = CancellationToken::new();
        let connection =
            UdpConnection::from_socket(Arc::new(udp), None, Some(cancel.child_token()))
                .await
                .map_err(|e| e.to_string())?;
        let transport = TransportLayer::new(cancel.clone());
        transport.add_transport(connection.into());
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
            params: vec![],
            headers: vec![],
        };
        let layer = Arc::new(DialogLayer::new(endpoint.inner.clone()));
        let mut incoming = endpoint
            .incoming_transactions()
            .map_err(|e| e.to_string())?;
        // The stack's own loop, and requests from the far end (a BYE).
        let inner = endpoint.inner.clone();
        tokio::spawn(async move {
            let _ = inner.serve().await;
        });
        let in_dialogs = layer.clone();
        tokio::spawn(async move {
            while let Some(mut tx) = incoming.recv().await {
                match in_dialogs.match_dialog(&tx) {
                    Some(Dialog::Invite(mut d)) => {
                        let _ = d.handle(&mut tx).await;
                        if matches!(
                            d.state(),
                            rsipstack::dialog::dialog::DialogState::Terminated(..)
                        ) {
                            in_dialogs.remove_dialog(&d.id());
                        }
                    }
                    _ => {
                        let _ = tx.reply(StatusCode::CallTransactionDoesNotExist).await;
                    }
                }
            }
        });
        let domain = trunk
            .domain
            .clone()
            .unwrap_or_else(|| target_addr.to_string());
        Ok(SipDialer {
            _endpoint: endpoint,
            layer,
            target: target_addr,
            contact,
            domain,
            trunk,
            credential,
            t1,
            calls: RefCell::new(HashMap::new()),
            byes: RefCell::new(Vec::new()),
            cancel,
        })
    }

    fn request_uri(&self, e164: &str) -> Result<Uri, String> {
        let text = self
            .trunk
            .request_uri
            .replace("{e164}", e164)
            .replace("{number}", e164.trim_start_matches('+'))
            .replace("{domain}", &self.domain);
        Uri::try_from(text.as_str()).map_err(|e| format!("the request URI {text}: {e}"))
    }

    /// An SDP offer: G.711 µ-law and A-law, 20 ms frames, telephone-events,
    /// on the call's RTP port.
    fn offer(&self, port: u16) -> Vec<u8> {
        let host = self.contact.host_with_port.host.to_string();
        let session = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        format!(
            "v=0\r\no=flowc {session} {session} IN IP4 {host}\r\ns=flowc\r\nc=IN IP4 {host}\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP 0 8 {pt}\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
             a=rtpmap:{pt} telephone-event/8000\r\na=fmtp:{pt} 0-16\r\na=ptime:20\r\na=sendrecv\r\n",
            pt = rtp::EVENT_PT
        )
        .into_bytes()
    }

    /// Stops the stack, once the BYEs under way are answered (or abandoned
    /// after 64×T1).
    pub async fn shut_down(&self) {
        let byes = std::mem::take(&mut *self.byes.borrow_mut());
        for bye in byes {
            let _ = tokio::time::timeout(self.t1 * 64, bye).await;
        }
        self.cancel.cancel();
    }

    async fn invite(&self, call: &Call) -> Result<(Outcome, Option<(u16, String)>), String> {
        let callee = self.request_uri(&call.number)?;
        let media_ip: std::net::IpAddr = self
            .contact
            .host_with_port
            .host
            .to_string()
            .parse()
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        let media = Arc::new(
            Media::bind(media_ip)
                .await
                .map_err(|e| format!("cannot open an RTP port: {e}"))?,
        );
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
                Transport::Udp,
                HostWithPort::from(self.target),
            )),
            content_type: Some("application/sdp".into()),
            offer: Some(self.offer(media.port())),
            credential: self.credential.clone(),
            headers: (!headers.is_empty()).then_some(headers),
            ..Default::default()
        };
        let (state_tx, mut state_rx) = self.layer.new_dialog_state_channel();
        // Dialog states are not needed here: the final response says it all.
        tokio::spawn(async move { while state_rx.recv().await.is_some() {} });
        let (dialog, mut handle) = self
            .layer
            .do_invite_async(option, state_tx)
            .map_err(|e| e.to_string())?;
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
                        return Ok((Outcome::NoAnswer, None));
                    }
                }
            }
        };
        let (_, response) = result
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let Some(response) = response else {
            // No final response: Timer B.
            return Ok((Outcome::NetworkError, None));
        };
        let status = u16::from(response.status_code.clone());
        let has_tag = rsipstack::sip::prelude::HeadersExt::to_header(&response)
            .ok()
            .and_then(|t| t.tag().ok().flatten())
            .is_some();
        let outcome = outcome_of(status, has_tag, cancelled);
        // The phrase alone ("Busy Here"), without the code before it.
        let text = response.status_code.to_string();
        let reason = text
            .strip_prefix(&format!("{status} "))
            .unwrap_or(&text)
            .to_string();
        if outcome == Outcome::Answered {
            media.answered(&response.body);
            self.calls.borrow_mut().insert(call.id, (dialog, media));
        }
        Ok((outcome, Some((status, reason))))
    }
}

impl Dialer for SipDialer {
    async fn place(&self, call: Call) -> Dialled {
        let started = Instant::now();
        let (outcome, sip) = match self.invite(&call).await {
            Ok(r) => r,
            Err(why) => (Outcome::NetworkError, Some((0, why))),
        };
        Dialled {
            outcome,
            duration: chrono::Duration::from_std(started.elapsed()).unwrap_or_default(),
            sip,
        }
    }

    async fn gather(&self, call: CallId, ask: Ask) -> Option<String> {
        let media = self.calls.borrow().get(&call).map(|(_, m)| m.clone())?;
        media
            .keys(ask.digits, StdDuration::from_secs(ask.timeout_seconds))
            .await
    }

    async fn transfer(&self, _call: CallId, _number: String, _timeout: u64) -> TransferOutcome {
        TransferOutcome::Failed
    }

    async fn hang_up(&self, call: CallId) {
        let dialog = self.calls.borrow_mut().remove(&call);
        if let Some((dialog, _media)) = dialog {
            let layer = self.layer.clone();
            // Never waits on the BYE's reply; abandoned after 64×T1 by the stack.
            let bye = tokio::spawn(async move {
                let _ = dialog.bye().await;
                layer.remove_dialog(&dialog.id());
            });
            let mut byes = self.byes.borrow_mut();
            byes.retain(|b| !b.is_finished());
            byes.push(bye);
        }
    }
}
