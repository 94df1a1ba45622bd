//! Messages that are really sent: the outbox of `flowc run` (and of each
//! `flowc worker` of a PostgreSQL campaign) takes the SMS and e-mails the
//! flow wrote into the store and hands them to a courier — e-mail through
//! SMTP (`--smtp`), SMS through the exec bridge — retrying a temporary
//! failure with backoff, and never sending one twice (the store marks it
//! `sending`, durably, before it is handed over; of outboxes racing for a
//! message, one takes it).

use std::path::Path;

use chrono::Duration;

use crate::dialer::bridge::{Bridge, BridgeError};
use crate::runtime::clock::Clock;
use crate::store::outbox::{MessageStore, OutboxStore, Outgoing};
use crate::store::StoreError;

/// How many times a message is tried before it is `failed`.
pub const MAX_TRIES: u32 = 5;
/// The wait after the first temporary failure; each later one doubles it.
pub const FIRST_BACKOFF_SECONDS: i64 = 5;
/// How often the outbox looks for new messages while the run goes on.
const POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// Why a message was not delivered.
#[derive(Clone, Debug, PartialEq)]
pub struct Undelivered {
    pub reason: String,
    /// Worth trying again later (a busy server, a lost connection).
    pub temporary: bool,
}

/// Delivers one kind of message.
#[allow(async_fn_in_trait)]
pub trait Courier {
    /// The kind it delivers: `sms` or `email`.
    fn kind(&self) -> &'static str;
    /// Delivers the message; `Ok` may carry what the service said.
    async fn deliver(&self, message: &Outgoing) -> Result<Option<String>, Undelivered>;
}

/// The wait before try `tries + 1`, after `tries` tries.
pub fn backoff(tries: u32) -> Duration {
    Duration::seconds(FIRST_BACKOFF_SECONDS << tries.saturating_sub(1).min(10))
}

/// What the outbox did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Delivered {
    pub sent: usize,
    pub failed: usize,
    pub retried: usize,
    /// Found `sending` when the outbox opened: left `unknown`.
    pub interrupted: usize,
}

/// The outbox of one run's store (a file's, unless told otherwise).
pub struct Outbox<'a, C: Clock, S: MessageStore = OutboxStore> {
    store: S,
    couriers: Vec<&'a dyn DynCourier>,
    clock: &'a C,
    pub delivered: Delivered,
}

/// `Courier` behind a reference (async trait methods are not object safe).
pub trait DynCourier {
    fn kind(&self) -> &'static str;
    fn deliver<'m>(
        &'m self,
        message: &'m Outgoing,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Option<String>, Undelivered>> + 'm>,
    >;
}

impl<T: Courier> DynCourier for T {
    fn kind(&self) -> &'static str {
        Courier::kind(self)
    }
    fn deliver<'m>(
        &'m self,
        message: &'m Outgoing,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Option<String>, Undelivered>> + 'm>,
    > {
        Box::pin(Courier::deliver(self, message))
    }
}

impl<'a, C: Clock> Outbox<'a, C, OutboxStore> {
    /// The outbox of the store file at `path`.
    pub fn open(
        path: &Path,
        couriers: Vec<&'a dyn DynCourier>,
        clock: &'a C,
    ) -> Result<Self, StoreError> {
        let (store, interrupted) = OutboxStore::open(path)?;
        Ok(Outbox::over(store, couriers, clock, interrupted))
    }
}

impl<'a, C: Clock, S: MessageStore> Outbox<'a, C, S> {
    /// The outbox of `store`, which found `interrupted` messages a crash
    /// left `sending` (now `unknown`).
    pub fn over(
        store: S,
        couriers: Vec<&'a dyn DynCourier>,
        clock: &'a C,
        interrupted: usize,
    ) -> Self {
        Outbox {
            store,
            couriers,
            clock,
            delivered: Delivered {
                interrupted,
                ..Delivered::default()
            },
        }
    }

    fn kinds(&self) -> Vec<&'static str> {
        self.couriers.iter().map(|c| c.kind()).collect()
    }

    /// Delivers every message due now; returns how many it handled.
    pub async fn deliver_due(&mut self) -> Result<usize, StoreError> {
        let kinds = self.kinds();
        let due = self.store.due(&kinds, self.clock.now(), 100).await?;
        for m in &due {
            let Some(courier) = self.couriers.iter().find(|c| c.kind() == m.kind) else {
                continue;
            };
            if m.recipient.as_deref().is_none_or(str::is_empty) {
                let whom = if m.kind == "email" {
                    "the contact has no `email` field, or it is empty"
                } else {
                    "the message has no recipient"
                };
                // Never handed over: two outboxes failing it agree.
                self.store.failed(m.id, whom).await?;
                self.delivered.failed += 1;
                continue;
            }
            if !self.store.take(m.id, self.clock.now()).await? {
                // Another outbox (a worker's) has it.
                continue;
            }
            let tries = m.tries + 1;
            match courier.deliver(m).await {
                Ok(detail) => {
                    self.store
                        .sent(m.id, self.clock.now(), detail.as_deref())
                        .await?;
                    self.delivered.sent += 1;
                }
                Err(u) if u.temporary && tries < MAX_TRIES => {
                    let at = self.clock.now() + backoff(tries);
                    self.store.retry_at(m.id, at, &u.reason).await?;
                    self.delivered.retried += 1;
                }
                Err(u) => {
                    let reason = if u.temporary {
                        format!("gave up after {tries} tries: {}", u.reason)
                    } else {
                        u.reason
                    };
                    self.store.failed(m.id, &reason).await?;
                    self.delivered.failed += 1;
                }
            }
        }
        Ok(due.len())
    }

    /// Delivers messages as the run writes them, until `done` says the run
    /// is over, then what is left (waiting out retries); stops at once,
    /// after the message in hand, when `stop` is set.
    pub async fn run(
        &mut self,
        mut done: tokio::sync::watch::Receiver<bool>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), StoreError> {
        let kinds = self.kinds();
        if kinds.is_empty() {
            return Ok(());
        }
        loop {
            if *stop.borrow() {
                return Ok(());
            }
            let handled = self.deliver_due().await?;
            if handled > 0 {
                continue;
            }
            if *done.borrow() {
                // The run is over: wait for retries, then stop.
                if self.store.unsent(&kinds).await? == 0 {
                    return Ok(());
                }
                if let Some(at) = self.store.next_retry(&kinds).await? {
                    // A pause (Ctrl-C) ends the wait: the retry is the next run's.
                    tokio::select! {
                        _ = self.clock.sleep_until(at) => {}
                        _ = changed(&mut stop) => {}
                    }
                    continue;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = changed(&mut done) => {}
                _ = changed(&mut stop) => {}
            }
        }
    }
}

/// Resolves when the value changes; never when nobody can change it any more.
async fn changed(rx: &mut tokio::sync::watch::Receiver<bool>) {
    if rx.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// E-mail through an SMTP server (`--smtp smtp://user@host:port`).
pub struct SmtpCourier {
    transport: lettre::AsyncSmtpTransport<lettre::Tokio1Executor>,
    from: lettre::message::Mailbox,
}

impl SmtpCourier {
    /// `url`: `smtp://[user@]host[:port]` (STARTTLS when the server offers
    /// it) or `smtps://…` (TLS from the start); the password comes from the
    /// environment variable `password_env`.
    pub fn new(url: &str, from: &str, password_env: &str) -> Result<SmtpCourier, String> {
        use lettre::transport::smtp::authentication::Credentials;
        use lettre::transport::smtp::client::{Tls, TlsParameters};
        let bad = |why: &str| {
            format!("--smtp {url}: {why}; write smtp://user@host:port (STARTTLS when offered) or smtps://user@host:port")
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
        let (user, hostport) = match rest.trim_end_matches('/').rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest.trim_end_matches('/')),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (
                h,
                Some(
                    p.parse::<u16>()
                        .map_err(|_| bad("the port is not a number"))?,
                ),
            ),
            None => (hostport, None),
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let params = TlsParameters::new(host.to_string()).map_err(|e| bad(&e.to_string()))?;
        let (tls, default_port) = match scheme {
            "smtp" => (Tls::Opportunistic(params), 587),
            "smtps" => (Tls::Wrapper(params), 465),
            _ => return Err(bad("the scheme is neither smtp nor smtps")),
        };
        let mut builder =
            lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous(host)
                .port(port.unwrap_or(default_port))
                .tls(tls)
                .timeout(Some(std::time::Duration::from_secs(30)));
        if let Some(user) = user {
            let password = std::env::var(password_env).map_err(|_| {
                format!("--smtp names the user {user}: put the password in the environment variable {password_env}")
            })?;
            builder = builder.credentials(Credentials::new(user.to_string(), password));
        }
        let from = from
            .parse()
            .map_err(|e| format!("--mail-from {from}: not an e-mail address ({e})"))?;
        Ok(SmtpCourier {
            transport: builder.build(),
            from,
        })
    }
}

impl Courier for SmtpCourier {
    fn kind(&self) -> &'static str {
        "email"
    }

    async fn deliver(&self, m: &Outgoing) -> Result<Option<String>, Undelivered> {
        use lettre::AsyncTransport;
        let to: lettre::message::Mailbox = m
            .recipient
            .as_deref()
            .unwrap_or_default()
            .parse()
            .map_err(|e| Undelivered {
                reason: format!(
                    "`{}` is not an e-mail address ({e})",
                    m.recipient.as_deref().unwrap_or_default()
                ),
                temporary: false,
            })?;
        let email = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(m.subject.clone().unwrap_or_default())
            .body(m.text.clone())
            .map_err(|e| Undelivered {
                reason: e.to_string(),
                temporary: false,
            })?;
        match self.transport.send(email).await {
            Ok(response) => Ok(Some(
                response
                    .message()
                    .collect::<Vec<_>>()
                    .join(" ")
                    .trim()
                    .to_string(),
            )
            .filter(|s| !s.is_empty())),
            Err(e) => Err(Undelivered {
                reason: e.to_string(),
                temporary: !e.is_permanent(),
            }),
        }
    }
}

/// SMS through the exec bridge (`{"op": "sms", …}`).
pub struct BridgeSms<'a> {
    pub bridge: &'a Bridge,
    /// The sender number, when the flow names one.
    pub from: Option<String>,
}

impl Courier for BridgeSms<'_> {
    fn kind(&self) -> &'static str {
        "sms"
    }

    async fn deliver(&self, m: &Outgoing) -> Result<Option<String>, Undelivered> {
        let to = m.recipient.as_deref().unwrap_or_default();
        match self.bridge.sms(to, self.from.as_deref(), &m.text).await {
            Ok(()) => Ok(None),
            Err(BridgeError::Refused { message, temporary }) => Err(Undelivered {
                reason: message,
                temporary,
            }),
            Err(e) => Err(Undelivered {
                reason: e.to_string(),
                temporary: true,
            }),
        }
    }
}
