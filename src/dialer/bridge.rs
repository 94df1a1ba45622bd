//! `--dialer exec:PROGRAM`: one long-lived program that places the calls
//! (usually through a provider's HTTP API) and speaks JSON lines with flowc
//! over its standard input and output. Requests carry an `id`; replies name
//! the `id` they answer, in any order, so many calls go on at once. The
//! protocol is `docs/bridge.md`, its schema `docs/bridge.schema.json`.
//!
//! What can go wrong is bounded: each operation has a deadline (a dial's and
//! a gather's are their own timeout plus that deadline); a program that exits, or prints a line
//! that is not a reply, is *failed*: every call under way becomes `unknown`,
//! the failure is reported with the program's last words on standard error,
//! and the run is asked to pause through `on_failure`.

use std::collections::{HashMap, VecDeque};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot, watch};

use super::{Ask, Call, CallId, Dialer, Dialled, RECORD_DEFAULT_SECONDS};
use crate::ir::{Outcome, TransferOutcome};

/// Lines of the program's standard error kept for a failure report.
const STDERR_LINES: usize = 20;
/// The longest reply line quoted in an error.
const QUOTE_CHARS: usize = 200;

/// Why an operation got no reply.
#[derive(Debug, Clone, PartialEq)]
pub enum BridgeError {
    /// The program is gone or broke the protocol; the reason says how.
    Failed(String),
    /// No reply within the operation's deadline.
    Deadline(StdDuration),
    /// The program replied with an error of its own.
    Refused { message: String, temporary: bool },
}

impl std::fmt::Display for BridgeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BridgeError::Failed(why) => write!(f, "the bridge failed: {why}"),
            BridgeError::Deadline(d) => {
                write!(f, "the bridge did not reply within {} s", d.as_secs())
            }
            BridgeError::Refused { message, .. } => write!(f, "{message}"),
        }
    }
}

type OnFailure = Box<dyn Fn(String) + Send + Sync>;

#[derive(Default)]
struct Shared {
    pending: HashMap<u64, oneshot::Sender<Value>>,
    failed: Option<String>,
    /// flowc asked the program to end: its exit is no failure.
    closing: bool,
    stderr: VecDeque<String>,
}

impl Shared {
    fn stderr_tail(&self) -> String {
        self.stderr.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

pub struct Bridge {
    program: String,
    shared: Arc<Mutex<Shared>>,
    lines: mpsc::UnboundedSender<String>,
    next_id: std::sync::atomic::AtomicU64,
    deadline: StdDuration,
    on_failure: Arc<OnFailure>,
    child: Mutex<Option<Child>>,
}

impl Bridge {
    /// Starts the program (a command line, split on white space) inside the
    /// running tokio runtime. `on_failure` is called once, with the reason,
    /// when the program exits or breaks the protocol.
    pub fn start(
        command: &str,
        deadline: StdDuration,
        on_failure: impl Fn(String) + Send + Sync + 'static,
    ) -> Result<Bridge, String> {
        let mut words = command.split_whitespace();
        let program = words
            .next()
            .ok_or("`--dialer exec:` needs a program: `exec:./bridge.py`")?;
        let mut child = Command::new(program)
            .args(words)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            // Its own process group: Ctrl-C pauses the run, and the bridge
            // stays to finish the calls under way.
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start the bridge `{program}`: {e}"))?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let shared = Arc::new(Mutex::new(Shared::default()));
        let on_failure: Arc<OnFailure> = Arc::new(Box::new(on_failure));
        let (lines, mut to_write) = mpsc::unbounded_channel::<String>();

        // Standard error: the last lines, for a failure report. Its end is
        // signalled so that a crash is reported with the last words the
        // program wrote just before it (both pipes close at its exit, in
        // either order).
        let err_shared = shared.clone();
        let (stderr_closed, stderr_done) = watch::channel(false);
        tokio::spawn(async move {
            let mut err = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = err.next_line().await {
                let mut s = err_shared.lock().expect("not poisoned");
                if s.stderr.len() == STDERR_LINES {
                    s.stderr.pop_front();
                }
                s.stderr.push_back(line);
            }
            let _ = stderr_closed.send(true);
        });
        // Writer: one line per request, in order.
        let fail = failer(shared.clone(), on_failure.clone());
        let mut writer_stderr_done = stderr_done.clone();
        tokio::spawn(async move {
            while let Some(line) = to_write.recv().await {
                // The empty line is `shut_down`'s: the program's input closes.
                if line.is_empty() {
                    return;
                }
                if let Err(e) = stdin.write_all(line.as_bytes()).await {
                    if e.kind() == std::io::ErrorKind::BrokenPipe {
                        wait_for_stderr(&mut writer_stderr_done).await;
                        fail("it closed its standard input (it exited or crashed)".into());
                    } else {
                        fail(format!("cannot write to it ({e})"));
                    }
                    return;
                }
                let _ = stdin.flush().await;
            }
        });
        // Reader: replies to whoever waits for them.
        let fail = failer(shared.clone(), on_failure.clone());
        let reader_shared = shared.clone();
        let mut reader_stderr_done = stderr_done;
        tokio::spawn(async move {
            let mut out = BufReader::new(stdout).lines();
            loop {
                match out.next_line().await {
                    Ok(Some(line)) if line.trim().is_empty() => {}
                    Ok(Some(line)) => match reply_id(&line) {
                        Ok((id, reply)) => {
                            let waiting = reader_shared
                                .lock()
                                .expect("not poisoned")
                                .pending
                                .remove(&id);
                            // A reply nobody waits for (its deadline passed) is dropped.
                            if let Some(w) = waiting {
                                let _ = w.send(reply);
                            }
                        }
                        Err(why) => {
                            fail(format!(
                                "it printed a line that is not a reply ({why}): `{}`",
                                quote(&line)
                            ));
                            return;
                        }
                    },
                    Ok(None) => {
                        // A program that keeps its standard error open (a
                        // child of its own holds it) is not waited for long.
                        wait_for_stderr(&mut reader_stderr_done).await;
                        fail("it closed its standard output (it exited or crashed)".into());
                        return;
                    }
                    Err(e) => {
                        fail(format!("cannot read its output ({e})"));
                        return;
                    }
                }
            }
        });
        Ok(Bridge {
            program: program.to_string(),
            shared,
            lines,
            next_id: std::sync::atomic::AtomicU64::new(1),
            deadline,
            on_failure,
            child: Mutex::new(Some(child)),
        })
    }

    /// Why the bridge failed, with its last lines of standard error.
    pub fn failure(&self) -> Option<String> {
        let s = self.shared.lock().expect("not poisoned");
        s.failed.as_ref().map(|why| {
            let tail = s.stderr_tail();
            if tail.is_empty() {
                format!("the bridge `{}` failed: {why}", self.program)
            } else {
                format!(
                    "the bridge `{}` failed: {why}; its last words on standard error:\n{tail}",
                    self.program
                )
            }
        })
    }

    /// Sends one request and waits for its reply, within `deadline`.
    pub async fn request(
        &self,
        mut op: Value,
        deadline: StdDuration,
    ) -> Result<Value, BridgeError> {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut s = self.shared.lock().expect("not poisoned");
            if let Some(why) = &s.failed {
                return Err(BridgeError::Failed(why.clone()));
            }
            s.pending.insert(id, tx);
        }
        op["id"] = json!(id);
        let line = format!("{op}\n");
        if self.lines.send(line).is_err() {
            self.shared
                .lock()
                .expect("not poisoned")
                .pending
                .remove(&id);
            return Err(BridgeError::Failed("its input is closed".into()));
        }
        let reply = match tokio::time::timeout(deadline, rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => {
                let why = self.shared.lock().expect("not poisoned").failed.clone();
                return Err(BridgeError::Failed(
                    why.unwrap_or_else(|| "it stopped".into()),
                ));
            }
            Err(_) => {
                self.shared
                    .lock()
                    .expect("not poisoned")
                    .pending
                    .remove(&id);
                return Err(BridgeError::Deadline(deadline));
            }
        };
        if let Some(message) = reply.get("error") {
            return Err(BridgeError::Refused {
                message: message
                    .as_str()
                    .map_or_else(|| message.to_string(), str::to_string),
                temporary: reply
                    .get("temporary")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            });
        }
        Ok(reply)
    }

    /// Sends an SMS through the bridge (`op: "sms"`).
    pub async fn sms(&self, to: &str, from: Option<&str>, text: &str) -> Result<(), BridgeError> {
        self.request(
            json!({"op": "sms", "to": to, "from": from, "text": text}),
            self.deadline,
        )
        .await
        .map(|_| ())
    }

    /// Asks the program to end (closing its input) and waits a moment for it.
    pub async fn shut_down(&self) {
        let child = self.child.lock().expect("not poisoned").take();
        if let Some(mut child) = child {
            self.shared.lock().expect("not poisoned").closing = true;
            // The empty line ends the writer, which closes the program's input.
            let _ = self.lines.send(String::new());
            let _ = tokio::time::timeout(StdDuration::from_secs(2), child.wait()).await;
            let _ = child.start_kill();
        }
    }

    fn call_ref(call: CallId) -> String {
        format!("{}-{}", call.contact, call.attempt)
    }
}

/// Waits, a second at most, for the program's standard error to close, so
/// that a crash is reported with the last words it wrote before it.
async fn wait_for_stderr(closed: &mut watch::Receiver<bool>) {
    let _ = tokio::time::timeout(StdDuration::from_secs(1), closed.wait_for(|c| *c)).await;
}

/// A closure that marks the bridge failed (once), fails every waiting
/// request and calls `on_failure`.
fn failer(shared: Arc<Mutex<Shared>>, on_failure: Arc<OnFailure>) -> impl Fn(String) {
    move |why: String| {
        let waiting = {
            let mut s = shared.lock().expect("not poisoned");
            if s.failed.is_some() || s.closing {
                return;
            }
            s.failed = Some(why.clone());
            std::mem::take(&mut s.pending)
        };
        // Dropping the senders fails each waiting request.
        drop(waiting);
        on_failure(why);
    }
}

fn quote(line: &str) -> String {
    let mut q: String = line.chars().take(QUOTE_CHARS).collect();
    if line.chars().count() > QUOTE_CHARS {
        q.push('…');
    }
    q
}

/// The `id` a reply answers, and the reply.
fn reply_id(line: &str) -> Result<(u64, Value), String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let id = value
        .get("id")
        .and_then(Value::as_u64)
        .ok_or("no numeric `id`")?;
    Ok((id, value))
}

/// A dial reply's outcome, from its `outcome` name.
fn dial_outcome(reply: &Value) -> Result<Outcome, String> {
    let name = reply
        .get("outcome")
        .and_then(Value::as_str)
        .ok_or("a dial reply needs an `outcome`")?;
    Outcome::from_name(name)
        .filter(|o| Outcome::DIAL.contains(o))
        .ok_or_else(|| {
            format!(
                "`{name}` is not a dial outcome: {}",
                Outcome::DIAL.map(|o| o.name()).join(", ")
            )
        })
}

impl Dialer for Bridge {
    async fn place(&self, call: Call) -> Dialled {
        let started = Instant::now();
        // Its ring timeout, and the operations' deadline on top.
        let deadline = StdDuration::from_secs(call.timeout_seconds) + self.deadline;
        let op = json!({
            "op": "dial",
            "call": Self::call_ref(call.id),
            "to": call.number,
            "from": call.caller_id,
            "timeout": call.timeout_seconds,
            "detectVoicemail": call.detect_voicemail,
        });
        let elapsed = || chrono::Duration::from_std(started.elapsed()).unwrap_or_default();
        if self.shared.lock().expect("not poisoned").failed.is_some() {
            // Known not to be placed: the bridge was gone before it was asked.
            return Dialled {
                outcome: Outcome::NetworkError,
                duration: elapsed(),
                sip: None,
            };
        }
        let reply = self.request(op, deadline).await;
        match reply {
            Ok(reply) => match dial_outcome(&reply) {
                Ok(outcome) => Dialled {
                    outcome,
                    duration: elapsed(),
                    sip: sip_of(&reply),
                },
                Err(why) => {
                    // A reply the engine cannot route is the bridge's fault.
                    let fail = failer(self.shared.clone(), self.on_failure.clone());
                    fail(format!("{why}: `{}`", quote(&reply.to_string())));
                    Dialled {
                        outcome: Outcome::Unknown,
                        duration: elapsed(),
                        sip: None,
                    }
                }
            },
            Err(BridgeError::Refused { message, .. }) => Dialled {
                outcome: Outcome::NetworkError,
                duration: elapsed(),
                sip: Some((0, message)),
            },
            Err(_) => {
                // Nobody knows whether the call was placed.
                Dialled {
                    outcome: Outcome::Unknown,
                    duration: elapsed(),
                    sip: None,
                }
            }
        }
    }

    async fn gather(&self, call: CallId, ask: Ask) -> Option<String> {
        let op = json!({
            "op": "gather",
            "call": Self::call_ref(call),
            "digits": ask.digits,
            "timeout": ask.timeout_seconds,
            "try": ask.attempt,
        });
        let deadline = StdDuration::from_secs(ask.timeout_seconds) + self.deadline;
        let reply = self.request(op, deadline).await.ok()?;
        reply
            .get("digits")
            .and_then(Value::as_str)
            .filter(|d| !d.is_empty())
            .map(str::to_string)
    }

    async fn transfer(
        &self,
        call: CallId,
        number: String,
        timeout_seconds: u64,
    ) -> TransferOutcome {
        let op = json!({
            "op": "transfer",
            "call": Self::call_ref(call),
            "to": number,
            "timeout": timeout_seconds,
        });
        let deadline = StdDuration::from_secs(timeout_seconds) + self.deadline;
        match self.request(op, deadline).await {
            Ok(reply) => match reply.get("transfer").and_then(Value::as_str) {
                Some("answered") => TransferOutcome::Answered,
                Some("hangup") => TransferOutcome::Hangup,
                _ => TransferOutcome::Failed,
            },
            Err(_) => TransferOutcome::Failed,
        }
    }

    async fn say(&self, call: CallId, text: String) {
        let op = json!({"op": "say", "call": Self::call_ref(call), "text": text});
        let _ = self.request(op, self.deadline).await;
    }

    async fn play(&self, call: CallId, file: String) {
        let op = json!({"op": "play", "call": Self::call_ref(call), "file": file});
        let _ = self.request(op, self.deadline).await;
    }

    async fn record(&self, call: CallId, file: String, max_seconds: Option<u64>) {
        let op = json!({
            "op": "record",
            "call": Self::call_ref(call),
            "file": file,
            "maxSeconds": max_seconds,
        });
        let wait = StdDuration::from_secs(max_seconds.unwrap_or(RECORD_DEFAULT_SECONDS));
        let _ = self.request(op, wait + self.deadline).await;
    }

    async fn hang_up(&self, call: CallId) {
        let op = json!({"op": "hangup", "call": Self::call_ref(call)});
        let _ = self.request(op, self.deadline).await;
    }
}

/// The SIP status and reason a reply gives, when it gives one.
fn sip_of(reply: &Value) -> Option<(u16, String)> {
    let code = reply.get("sipStatus").and_then(Value::as_u64)?;
    let reason = reply
        .get("reason")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    u16::try_from(code).ok().map(|c| (c, reason))
}
