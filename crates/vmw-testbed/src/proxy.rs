//! A fault-injecting TCP proxy, for tests of what vmw does when the
//! connection to vCenter breaks at the worst moment.
//!
//! [`FaultProxy::start`] listens on `127.0.0.1` with a free port and relays
//! every connection it accepts to an upstream address, in both directions.
//! It reads the client-to-server stream as HTTP/1.x requests (framed by
//! `Content-Length`, or chunked), so keep-alive connections carrying many
//! requests are followed request by request. When a whole request contains
//! the [`FaultRule`]'s trigger (for a SOAP call, its method element, e.g.
//! `CloneVM_Task`), the proxy forwards that request completely, stops
//! relaying anything from the server, and closes the client's side of the
//! connection: the server executes the call, the client never hears the
//! answer. The server's side is closed too, once the server has begun to
//! answer (the answer is discarded) or after [`FaultRule::answer_grace`],
//! so the server finishes the request as it would for any client that hung
//! up after sending it.
//!
//! The proxy must see the requests in clear text, so it is meant for a
//! simulator serving plain http ([`crate::VcsimOptions::plain_http`]); a
//! stream that does not parse as HTTP requests (TLS, say) is relayed
//! untouched and never triggers the fault.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use vmw_govc::{GovcExt, VmRef, requests::VmClone};
//! use vmw_testbed::{FaultProxy, FaultRule, Vcsim, VcsimOptions};
//!
//! let sim = Vcsim::start_with(VcsimOptions::new().plain_http()).await?;
//! let proxy = FaultProxy::start(sim.socket_addr(), FaultRule::drop_after("CloneVM_Task")).await?;
//! let clone = VmClone::new(
//!     VmRef::parse("/DC0/vm/TEMPLATE-cloud-init-jammy")?,
//!     VmRef::parse("/DC0/vm/vm-1")?,
//! );
//! assert!(sim.govc_via(proxy.address()).exec(&clone).await.is_err());
//! assert_eq!(proxy.fired(), 1);
//! # Ok(()) }
//! ```

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};

use crate::TestbedError;

/// How the proxy hangs up on the client when its rule fires.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClientClose {
    /// An orderly close: the client reads end of file.
    #[default]
    Eof,
    /// An abortive close (`SO_LINGER` 0): the client gets a connection
    /// reset.
    Reset,
}

/// When a [`FaultProxy`] drops a connection, and how.
#[derive(Clone, Debug)]
pub struct FaultRule {
    trigger: Vec<u8>,
    limit: Option<u64>,
    close: ClientClose,
    answer_grace: Duration,
}

impl FaultRule {
    /// Drop the connection right after the first request that contains
    /// `trigger` (anywhere in its request line, headers or body) has been
    /// forwarded in full. Fires once; an empty trigger matches every
    /// request.
    pub fn drop_after(trigger: impl AsRef<[u8]>) -> Self {
        Self {
            trigger: trigger.as_ref().to_vec(),
            limit: Some(1),
            close: ClientClose::Eof,
            answer_grace: Duration::from_secs(10),
        }
    }

    /// Fire for the first `n` matching requests only (`0`: never), across
    /// all connections; later ones are relayed normally.
    #[must_use]
    pub fn times(mut self, n: u64) -> Self {
        self.limit = Some(n);
        self
    }

    /// Fire for every matching request.
    #[must_use]
    pub fn every_time(mut self) -> Self {
        self.limit = None;
        self
    }

    /// Hang up on the client this way (default: [`ClientClose::Eof`]).
    #[must_use]
    pub fn close(mut self, close: ClientClose) -> Self {
        self.close = close;
        self
    }

    /// How long the server's side stays open after the fault, waiting for
    /// the server to begin its (discarded) answer. Default 10 s.
    #[must_use]
    pub fn answer_grace(mut self, grace: Duration) -> Self {
        self.answer_grace = grace;
        self
    }

    /// The trigger.
    pub fn trigger(&self) -> &[u8] {
        &self.trigger
    }
}

/// What the proxy has seen so far.
#[derive(Debug, Default)]
struct Counters {
    connections: AtomicU64,
    fired: AtomicU64,
}

impl Counters {
    /// Takes one firing from the rule's budget; `false` once it is spent.
    fn try_fire(&self, limit: Option<u64>) -> bool {
        self.fired
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| match limit {
                Some(limit) if n >= limit => None,
                _ => Some(n + 1),
            })
            .is_ok()
    }
}

/// A running fault-injecting proxy; stops (with every connection it
/// relays) on drop.
#[derive(Debug)]
pub struct FaultProxy {
    address: SocketAddr,
    upstream: SocketAddr,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on `127.0.0.1` (free port) and relays to `upstream`,
    /// applying `rule`. Must be called within a Tokio runtime.
    pub async fn start(upstream: SocketAddr, rule: FaultRule) -> Result<Self, TestbedError> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(TestbedError::Proxy)?;
        let address = listener.local_addr().map_err(TestbedError::Proxy)?;
        let counters = Arc::new(Counters::default());
        let task = tokio::spawn(serve(listener, upstream, Arc::new(rule), counters.clone()));
        Ok(Self {
            address,
            upstream,
            counters,
            task,
        })
    }

    /// Where the proxy listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Where it relays to.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// How many times the rule has fired (connections dropped).
    pub fn fired(&self) -> u64 {
        self.counters.fired.load(Ordering::SeqCst)
    }

    /// How many client connections the proxy has accepted.
    pub fn connections(&self) -> u64 {
        self.counters.connections.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // Dropping the accept loop drops its JoinSet, which aborts every
        // relay still running.
        self.task.abort();
    }
}

async fn serve(
    listener: TcpListener,
    upstream: SocketAddr,
    rule: Arc<FaultRule>,
    counters: Arc<Counters>,
) {
    let mut relays = JoinSet::new();
    loop {
        let client = match listener.accept().await {
            Ok((client, _)) => client,
            Err(e) => {
                // Out of descriptors, or a connection that died while
                // queued: wait a little rather than spin.
                tracing::warn!("fault proxy: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        while relays.try_join_next().is_some() {}
        counters.connections.fetch_add(1, Ordering::SeqCst);
        relays.spawn(relay(client, upstream, rule.clone(), counters.clone()));
    }
}

/// Relays one connection until both sides are done, or until the rule
/// fires on one of its requests.
async fn relay(
    mut client: TcpStream,
    upstream_addr: SocketAddr,
    rule: Arc<FaultRule>,
    counters: Arc<Counters>,
) {
    let mut upstream = match TcpStream::connect(upstream_addr).await {
        Ok(s) => s,
        Err(e) => {
            // Dropping the client tells it: nothing behind the proxy.
            tracing::warn!("fault proxy: cannot reach {upstream_addr}: {e}");
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);

    // Set by the client-to-server half before it forwards the end of the
    // request that fires the rule: from then on, nothing the server sends
    // reaches the client. Both halves run in this one task, so the server
    // half sees it before it can read a byte of the answer.
    let stop = Notify::new();
    let fired = {
        let (mut client_rx, mut client_tx) = client.split();
        let (mut upstream_rx, mut upstream_tx) = upstream.split();
        let stop = &stop;
        let rule = &*rule;
        let counters = &*counters;

        let to_server = async move {
            let mut scanner = RequestScanner::new(&rule.trigger);
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = match client_rx.read(&mut buf).await {
                    Ok(0) | Err(_) => {
                        let _ = upstream_tx.shutdown().await;
                        return false;
                    }
                    Ok(n) => n,
                };
                let data = &buf[..n];
                let mut scanned = 0;
                while let Some(len) = scanner.scan(&data[scanned..]) {
                    let end = scanned + len;
                    if counters.try_fire(rule.limit) {
                        stop.notify_one();
                        // Whatever follows the request (a pipelined next
                        // one) is dropped with the connection.
                        let _ = upstream_tx.write_all(&data[..end]).await;
                        let _ = upstream_tx.flush().await;
                        return true;
                    }
                    scanned = end;
                }
                if upstream_tx.write_all(data).await.is_err() {
                    return false;
                }
            }
        };

        let to_client = async move {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                tokio::select! {
                    biased;
                    () = stop.notified() => return,
                    read = upstream_rx.read(&mut buf) => match read {
                        Ok(0) | Err(_) => {
                            let _ = client_tx.shutdown().await;
                            return;
                        }
                        Ok(n) => {
                            if client_tx.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    },
                }
            }
        };

        tokio::join!(to_server, to_client).0
    };

    if fired {
        if rule.close == ClientClose::Reset {
            let _ = client.set_zero_linger();
        }
        drop(client);
        // The first bytes of the answer mean the server has handled the
        // request; only then hang up on it too.
        let mut buf = [0u8; 4096];
        let _ = tokio::time::timeout(rule.answer_grace, upstream.read(&mut buf)).await;
    }
}

/// Longest request head (request line and headers) the scanner accepts.
const MAX_HEAD: usize = 64 * 1024;
/// Longest chunk-size line the scanner accepts.
const MAX_CHUNK_LINE: usize = 1024;

/// Follows a client-to-server byte stream as a sequence of HTTP/1.x
/// requests and finds where each request that contains the trigger ends.
#[derive(Debug)]
struct RequestScanner {
    matcher: Matcher,
    phase: Phase,
    head: Vec<u8>,
}

#[derive(Debug)]
enum Phase {
    /// Reading a request line and headers (kept in `head`).
    Head,
    /// This many bytes of a `Content-Length` body still to come.
    Body(u64),
    /// Inside a chunked body.
    Chunked(Chunk),
    /// The stream does not parse as HTTP requests: never fires again.
    Opaque,
}

#[derive(Debug)]
enum Chunk {
    /// The chunk-size line so far.
    Size(Vec<u8>),
    /// This many bytes of chunk data still to come.
    Data(u64),
    /// The line end after a chunk's data.
    DataEnd,
    /// The trailer section; the count is the length of the current line.
    Trailer(usize),
}

/// How a request's body is delimited.
#[derive(Debug, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
}

impl RequestScanner {
    fn new(trigger: &[u8]) -> Self {
        Self {
            matcher: Matcher::new(trigger),
            phase: Phase::Head,
            head: Vec::new(),
        }
    }

    /// Consumes `data` up to the end of the first request that contains
    /// the trigger and returns how many bytes that was (at least one); or
    /// consumes all of `data` and returns `None`.
    fn scan(&mut self, data: &[u8]) -> Option<usize> {
        let mut i = 0;
        while i < data.len() {
            let complete = match &mut self.phase {
                Phase::Opaque => return None,
                Phase::Head => {
                    if self.head.is_empty() && matches!(data[i], b'\r' | b'\n') {
                        // Blank lines between requests are allowed.
                        i += 1;
                        continue;
                    }
                    let before = self.head.len();
                    self.head.extend_from_slice(&data[i..]);
                    let from = before.saturating_sub(3);
                    let Some(at) = find(&self.head[from..], b"\r\n\r\n") else {
                        if self.head.len() > MAX_HEAD {
                            self.go_opaque();
                        }
                        return None;
                    };
                    let head_len = from + at + 4;
                    self.head.truncate(head_len);
                    i += head_len - before;
                    let head = std::mem::take(&mut self.head);
                    self.matcher.feed(&head);
                    match framing(&head) {
                        Some(Framing::Length(0)) => true,
                        Some(Framing::Length(n)) => {
                            self.phase = Phase::Body(n);
                            false
                        }
                        Some(Framing::Chunked) => {
                            self.phase = Phase::Chunked(Chunk::Size(Vec::new()));
                            false
                        }
                        None => {
                            self.go_opaque();
                            return None;
                        }
                    }
                }
                Phase::Body(remaining) => {
                    let take = take_len(*remaining, data.len() - i);
                    self.matcher.feed(&data[i..i + take]);
                    i += take;
                    *remaining -= take as u64;
                    *remaining == 0
                }
                Phase::Chunked(chunk) => match chunk {
                    Chunk::Size(line) => {
                        let byte = data[i];
                        i += 1;
                        if byte == b'\n' {
                            match chunk_size(line) {
                                Some(0) => *chunk = Chunk::Trailer(0),
                                Some(n) => *chunk = Chunk::Data(n),
                                None => {
                                    self.go_opaque();
                                    return None;
                                }
                            }
                        } else if line.len() >= MAX_CHUNK_LINE {
                            self.go_opaque();
                            return None;
                        } else {
                            line.push(byte);
                        }
                        false
                    }
                    Chunk::Data(remaining) => {
                        let take = take_len(*remaining, data.len() - i);
                        self.matcher.feed(&data[i..i + take]);
                        i += take;
                        *remaining -= take as u64;
                        if *remaining == 0 {
                            *chunk = Chunk::DataEnd;
                        }
                        false
                    }
                    Chunk::DataEnd => {
                        if data[i] == b'\n' {
                            *chunk = Chunk::Size(Vec::new());
                        }
                        i += 1;
                        false
                    }
                    Chunk::Trailer(line_len) => {
                        let byte = data[i];
                        i += 1;
                        match byte {
                            b'\n' if *line_len == 0 => true,
                            b'\n' => {
                                *line_len = 0;
                                false
                            }
                            b'\r' => false,
                            _ => {
                                *line_len += 1;
                                false
                            }
                        }
                    }
                },
            };
            if complete {
                self.phase = Phase::Head;
                if self.matcher.finish() {
                    return Some(i);
                }
            }
        }
        None
    }

    fn go_opaque(&mut self) {
        self.phase = Phase::Opaque;
        self.head = Vec::new();
    }
}

/// `min(remaining, available)` as a slice length.
fn take_len(remaining: u64, available: usize) -> usize {
    usize::try_from(remaining).map_or(available, |r| r.min(available))
}

/// The body framing of a request head, or `None` when it is not an
/// HTTP/1.x request head we understand.
fn framing(head: &[u8]) -> Option<Framing> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let request_line = lines.next()?;
    let mut parts = request_line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if method.is_empty()
        || !method.bytes().all(|b| b.is_ascii_uppercase())
        || target.is_empty()
        || !version.starts_with("HTTP/1.")
        || parts.next().is_some()
    {
        return None;
    }
    let mut length = None;
    let mut chunked = false;
    for line in lines.take_while(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':')?;
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<u64>().ok()?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        }
    }
    Some(if chunked {
        Framing::Chunked
    } else {
        Framing::Length(length.unwrap_or(0))
    })
}

/// The size of a chunk-size line (`1a;ext=1\r`).
fn chunk_size(line: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(line).ok()?;
    let size = text.split(';').next()?.trim();
    u64::from_str_radix(size, 16).ok()
}

/// Where `needle` (not empty) first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Looks for the trigger in one request, fed in pieces.
#[derive(Debug)]
struct Matcher {
    needle: Vec<u8>,
    /// The last `needle.len() - 1` bytes fed, for matches across pieces.
    tail: Vec<u8>,
    found: bool,
}

impl Matcher {
    fn new(needle: &[u8]) -> Self {
        Self {
            needle: needle.to_vec(),
            tail: Vec::new(),
            found: needle.is_empty(),
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        if self.found || bytes.is_empty() {
            return;
        }
        let keep = self.needle.len().saturating_sub(1);
        let mut joint = std::mem::take(&mut self.tail);
        joint.extend_from_slice(&bytes[..bytes.len().min(keep)]);
        if find(&joint, &self.needle).is_some() || find(bytes, &self.needle).is_some() {
            self.found = true;
            return;
        }
        if bytes.len() >= keep {
            joint.clear();
            joint.extend_from_slice(&bytes[bytes.len() - keep..]);
        } else {
            let cut = joint.len().saturating_sub(keep);
            joint.drain(..cut);
        }
        self.tail = joint;
    }

    /// Whether the request just completed contained the trigger; resets
    /// for the next one.
    fn finish(&mut self) -> bool {
        let found = self.found;
        self.tail.clear();
        self.found = self.needle.is_empty();
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(body: &str) -> String {
        format!(
            "POST /sdk HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    /// Feeds `stream` in pieces of `step` bytes; the stream offsets at
    /// which a triggering request ends.
    fn ends(trigger: &str, stream: &[u8], step: usize) -> Vec<usize> {
        let mut scanner = RequestScanner::new(trigger.as_bytes());
        let mut found = Vec::new();
        for (n, piece) in stream.chunks(step).enumerate() {
            let mut scanned = 0;
            while let Some(len) = scanner.scan(&piece[scanned..]) {
                scanned += len;
                found.push(n * step + scanned);
            }
        }
        found
    }

    #[test]
    fn finds_the_end_of_the_triggering_request_on_a_keep_alive_stream() {
        let first = post("<RetrieveServiceContent/>");
        let second = post("<CloneVM_Task><name>vm-1</name></CloneVM_Task>");
        let third = post("<WaitForUpdatesEx/>");
        let stream = format!("{first}{second}{third}");
        let want = vec![first.len() + second.len()];
        for step in [1, 2, 3, 7, 16, 100, stream.len()] {
            assert_eq!(
                ends("CloneVM_Task", stream.as_bytes(), step),
                want,
                "step {step}"
            );
        }
    }

    #[test]
    fn a_trigger_in_the_headers_counts_and_every_match_is_reported() {
        let get = "GET /CloneVM_Task HTTP/1.1\r\nHost: x\r\n\r\n";
        let stream = format!("{get}\r\n{get}");
        assert_eq!(
            ends("CloneVM_Task", stream.as_bytes(), 5),
            [get.len(), stream.len()]
        );
    }

    #[test]
    fn the_trigger_must_be_in_the_request_not_split_across_two() {
        let stream = format!("{}{}", post("xxClone"), post("VM_Taskxx"));
        assert!(ends("CloneVM_Task", stream.as_bytes(), 4).is_empty());
    }

    #[test]
    fn chunked_bodies_end_after_the_last_chunk_and_trailers() {
        let chunked = "POST /sdk HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
                       6\r\nCloneV\r\n6;x=y\r\nM_Task\r\n0\r\nX-Trailer: 1\r\n\r\n";
        let stream = format!("{chunked}{}", post("<Logout/>"));
        for step in [1, 3, stream.len()] {
            assert_eq!(
                ends("CloneVM_Task", stream.as_bytes(), step),
                [chunked.len()],
                "step {step}"
            );
        }
    }

    #[test]
    fn not_http_is_never_triggered() {
        let mut stream = b"\x16\x03\x01\x02\x00CloneVM_Task\r\n\r\n".to_vec();
        stream.extend_from_slice(post("CloneVM_Task").as_bytes());
        assert!(ends("CloneVM_Task", &stream, 8).is_empty());
        let bad_length = "POST / HTTP/1.1\r\nContent-Length: many\r\n\r\nCloneVM_Task";
        assert!(ends("CloneVM_Task", bad_length.as_bytes(), 8).is_empty());
    }

    #[test]
    fn an_empty_trigger_matches_every_request() {
        let (a, b) = (post("a"), post("bb"));
        let stream = format!("{a}{b}");
        assert_eq!(ends("", stream.as_bytes(), 4), [a.len(), stream.len()]);
    }

    #[test]
    fn the_budget_is_shared_and_bounded() {
        let counters = Counters::default();
        assert!(counters.try_fire(Some(2)));
        assert!(counters.try_fire(Some(2)));
        assert!(!counters.try_fire(Some(2)));
        assert!(counters.try_fire(None));
        assert_eq!(counters.fired.load(Ordering::SeqCst), 3);
        assert!(!Counters::default().try_fire(Some(0)));
    }
}
