//! Mutual TLS: every caller presents a client certificate from the hub's CA, and the certificate's
//! SAN URI says which agency it is. The hub never learns an agency's identity from a message.
//!
//! The server side is a [`TlsIncoming`] stream for
//! [`tonic::transport::Server::serve_with_incoming_shutdown`]; each connection it yields carries a
//! [`PeerIdentity`] that tonic copies into every request's extensions, so a handler does
//! `request.extensions().get::<PeerIdentity>()`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::Stream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::{VerifierBuilderError, WebPkiClientVerifier};
use rustls::{RootCertStore, ServerConfig};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::{self, AbortHandle, JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tonic::transport::server::Connected;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tracing::{debug, warn};
use x509_parser::extensions::GeneralName;

use crate::audit::AuditSink;
use crate::domain::Agency;
use crate::domain::audit::{AuditEntry, HANDSHAKE_METHOD};

/// How long a client may take to complete the TLS handshake before it is dropped, so that
/// half-open or stalled connections cannot pile up.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The name clients expect in the hub's certificate; the development server certificate is issued
/// for it (see [`crate::pki::DEFAULT_SERVER_NAMES`]).
pub const SERVER_NAME: &str = "localhost";

/// The SAN URI prefix that marks an agency identity. It mirrors the domain's
/// `AGENCY_URI_PREFIX` (a test keeps the two in step) so that this module needs only [`Agency`].
const AGENCY_URI_PREFIX: &str = "quotahub://agency/";

/// Connections handed to the server but not yet taken; a small buffer is enough because tonic
/// takes each one as soon as it arrives.
const READY_CONNECTIONS: usize = 64;

/// Pause after an accept error other than a vanished peer (typically out of file descriptors),
/// so the accept loop does not spin while the condition lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(500);

/// Bounds on connections that have not yet shown who they are, and on connections per peer
/// address, so that idle or slow sockets cannot keep agencies out (`[tls]` settings).
///
/// A connection must send its first byte within `silent_timeout` and finish the handshake within
/// `handshake_timeout`. When a new connection finds its address's `max_handshakes_per_address`,
/// or all `max_handshakes`, in use, the oldest handshake that has not sent a byte yet (of that
/// address, or of any) is closed to make room; only when every one has started speaking is the
/// new connection refused. A client that speaks at once, as every TLS client does, is thus never
/// displaced by sockets that stay silent, even from its own address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Longest time from accepting a connection to the end of its handshake.
    pub handshake_timeout: Duration,
    /// Longest time a new connection may stay silent before it is closed.
    pub silent_timeout: Duration,
    /// Handshakes in progress at once, from every address.
    pub max_handshakes: usize,
    /// Handshakes in progress at once from one address.
    pub max_handshakes_per_address: usize,
    /// Connections (in handshake or served) at once from one address.
    pub max_connections_per_address: usize,
}

impl Default for ConnectionLimits {
    fn default() -> ConnectionLimits {
        ConnectionLimits {
            handshake_timeout: HANDSHAKE_TIMEOUT,
            silent_timeout: Duration::from_secs(3),
            max_handshakes: 1_024,
            max_handshakes_per_address: 64,
            max_connections_per_address: 4_096,
        }
    }
}

/// What can go wrong while setting up TLS.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM input held nothing usable; `what` says which input.
    #[error("{what}: {reason}")]
    Pem {
        /// The input concerned, e.g. "server private key".
        what: &'static str,
        /// Why it could not be used.
        reason: String,
    },
    /// rustls rejected the certificates, key or protocol settings.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client-certificate verifier could not be built (no trust anchor, bad CRL).
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] VerifierBuilderError),
    /// The endpoint is not a valid URI.
    #[error("invalid endpoint {endpoint}: {reason}")]
    Endpoint {
        /// The endpoint as given.
        endpoint: String,
        /// Why it is not valid.
        reason: String,
    },
    /// tonic could not configure TLS or connect.
    #[error("gRPC transport: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Installs rustls' *ring* provider as the process default, which rustls and tonic fall back on
/// wherever a config is built without an explicit provider. Safe to call any number of times; a
/// provider installed earlier is kept.
pub fn install_crypto_provider() {
    // The only error is "already installed", which is the state we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The hub's TLS configuration: TLS 1.3 and 1.2 only, a client certificate required and verified
/// against the CA(s) in `ca_pem`, ALPN `h2`.
pub fn server_config(
    ca_pem: &[u8],
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_with_crls(ca_pem, cert_pem, key_pem, Vec::new())
}

/// As [`server_config`], also refusing client certificates revoked by `crls` (DER). With CRLs
/// given, a certificate whose revocation status they cannot decide is refused too.
pub fn server_config_with_crls(
    ca_pem: &[u8],
    cert_pem: &[u8],
    key_pem: &[u8],
    crls: Vec<CertificateRevocationListDer<'static>>,
) -> Result<Arc<ServerConfig>, TlsError> {
    // Not `allow_unauthenticated`: a client without a certificate fails the handshake.
    // gRPC runs over HTTP/2 only.
    build_server_config(
        ca_pem,
        cert_pem,
        key_pem,
        crls,
        ClientCertificate::Required,
        vec![b"h2".to_vec()],
    )
}

/// The console's TLS configuration (`console.listen`): the same CA, server certificate and CRLs
/// as [`server_config_with_crls`], but a client certificate is only *requested*, so that a
/// browser without one completes the handshake and is shown a refusal page rather than a TLS
/// error. A certificate that is presented is verified exactly as for gRPC (chained to the CA, not
/// revoked). ALPN offers HTTP/2 and HTTP/1.1 for browsers.
pub fn console_config_with_crls(
    ca_pem: &[u8],
    cert_pem: &[u8],
    key_pem: &[u8],
    crls: Vec<CertificateRevocationListDer<'static>>,
) -> Result<Arc<ServerConfig>, TlsError> {
    build_server_config(
        ca_pem,
        cert_pem,
        key_pem,
        crls,
        ClientCertificate::Requested,
        vec![b"h2".to_vec(), b"http/1.1".to_vec()],
    )
}

/// Whether a client must present a certificate to complete the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientCertificate {
    Required,
    Requested,
}

fn build_server_config(
    ca_pem: &[u8],
    cert_pem: &[u8],
    key_pem: &[u8],
    crls: Vec<CertificateRevocationListDer<'static>>,
    client_certificate: ClientCertificate,
    alpn: Vec<Vec<u8>>,
) -> Result<Arc<ServerConfig>, TlsError> {
    install_crypto_provider();
    // ring's default suites are already the strong ones only: the three TLS 1.3 AEAD suites and,
    // for TLS 1.2, ECDHE with AES-GCM or ChaCha20-Poly1305. No CBC, RSA key exchange or SHA-1.
    let provider = Arc::new(rustls::crypto::ring::default_provider());

    let mut roots = RootCertStore::empty();
    for ca in parse_certs(ca_pem, "CA certificate")? {
        roots.add(ca)?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .with_crls(crls);
    let verifier = match client_certificate {
        ClientCertificate::Required => verifier.build()?,
        ClientCertificate::Requested => verifier.allow_unauthenticated().build()?,
    };

    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            parse_certs(cert_pem, "server certificate")?,
            PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Pem {
                what: "server private key",
                reason: e.to_string(),
            })?,
        )?;
    config.alpn_protocols = alpn;
    Ok(Arc::new(config))
}

fn parse_certs(pem: &[u8], what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what,
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what,
            reason: "no PEM certificate found".into(),
        });
    }
    Ok(certs)
}

/// Why a connection without a client certificate has no agency (console connections only).
pub const NO_CERTIFICATE: &str = "no client certificate was presented";

/// Who is on the other end of a connection, established once per connection during the TLS
/// handshake and handed to every request on it through its extensions.
#[derive(Clone, Debug)]
pub struct PeerIdentity {
    /// The client's address, for logs and audit.
    pub remote_addr: SocketAddr,
    /// SHA-256 (hex) of the client's leaf certificate DER: pins the exact certificate in audit
    /// records, and is what a revocation or key-rotation check would look up.
    pub cert_fingerprint: String,
    /// The agency named by the certificate's SAN URI, or why none could be read. A certificate
    /// can chain to the CA yet name no agency; handlers refuse such callers.
    pub agency: Result<Agency, String>,
}

impl PeerIdentity {
    /// Reads the identity from a client's leaf certificate (DER): its fingerprint, and the agency
    /// named by the first SAN URI under `quotahub://agency/`.
    pub fn from_leaf_certificate(remote_addr: SocketAddr, leaf_der: &[u8]) -> PeerIdentity {
        PeerIdentity {
            remote_addr,
            cert_fingerprint: hex::encode(Sha256::digest(leaf_der)),
            agency: agency_of(leaf_der),
        }
    }
}

/// The agency a PEM certificate names and the certificate's fingerprint, as the hub would read
/// them from a client presenting it (for registering the certificate).
pub fn certificate_identity(cert_pem: &[u8]) -> Result<(Agency, String), String> {
    let der = CertificateDer::from_pem_slice(cert_pem)
        .map_err(|error| format!("not a PEM certificate: {error}"))?;
    let identity = PeerIdentity::from_leaf_certificate(([0, 0, 0, 0], 0).into(), &der);
    Ok((identity.agency?, identity.cert_fingerprint))
}

fn agency_of(leaf_der: &[u8]) -> Result<Agency, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf_der)
        .map_err(|e| format!("the client certificate does not parse: {e}"))?;
    let san = cert.subject_alternative_name().map_err(|e| {
        format!("the client certificate's subject alternative names are invalid: {e}")
    })?;
    let uri = san
        .iter()
        .flat_map(|san| san.value.general_names.iter())
        .find_map(|name| match name {
            GeneralName::URI(uri) if uri.starts_with(AGENCY_URI_PREFIX) => Some(*uri),
            _ => None,
        })
        .ok_or_else(|| {
            format!("the client certificate names no agency (no SAN URI starting with `{AGENCY_URI_PREFIX}`)")
        })?;
    Agency::from_uri(uri)
}

/// A client connection that completed the mutual-TLS handshake, with the identity its
/// certificate establishes. tonic serves it like any socket and exposes [`PeerIdentity`] to
/// handlers through [`Connected`].
pub struct AuthenticatedStream {
    inner: TlsStream<TcpStream>,
    identity: PeerIdentity,
    /// Counts the connection against its address until it closes.
    _slot: AddressSlot,
}

impl AuthenticatedStream {
    /// The identity established by the client's certificate.
    pub fn identity(&self) -> &PeerIdentity {
        &self.identity
    }
}

impl std::fmt::Debug for AuthenticatedStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthenticatedStream")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl Connected for AuthenticatedStream {
    type ConnectInfo = PeerIdentity;

    fn connect_info(&self) -> PeerIdentity {
        self.identity.clone()
    }
}

impl AsyncRead for AuthenticatedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for AuthenticatedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The hub's listener as a stream of authenticated connections, for
/// [`tonic::transport::Server::serve_with_incoming_shutdown`].
///
/// A background task accepts TCP connections and runs each TLS handshake in its own task under
/// [`HANDSHAKE_TIMEOUT`], so a slow or hostile client never holds up the others. Failed
/// handshakes are logged and dropped; only authenticated connections are yielded. Dropping the
/// stream (as tonic does on shutdown) closes the listener and abandons handshakes in progress.
pub struct TlsIncoming {
    connections: mpsc::Receiver<AuthenticatedStream>,
    accept_loop: JoinHandle<()>,
}

impl TlsIncoming {
    /// Starts accepting on `listener` with `config` (see [`server_config`]). Must be called
    /// within a tokio runtime.
    pub fn new(listener: TcpListener, config: Arc<ServerConfig>) -> TlsIncoming {
        TlsIncoming::with_limits(listener, config, ConnectionLimits::default())
    }

    /// As [`TlsIncoming::new`] with other limits (tests use short timeouts and small bounds).
    pub fn with_limits(
        listener: TcpListener,
        config: Arc<ServerConfig>,
        limits: ConnectionLimits,
    ) -> TlsIncoming {
        let (_keep, configs) = watch::channel(config);
        TlsIncoming::start(listener, configs, None, limits)
    }

    /// Accepts with whatever configuration `configs` holds at each new connection (so that a
    /// reloaded CA, CRL or server certificate applies from the next connection on, and open ones
    /// keep working), and records refused handshakes in `audit`.
    pub fn serving(
        listener: TcpListener,
        configs: watch::Receiver<Arc<ServerConfig>>,
        audit: AuditSink,
        limits: ConnectionLimits,
    ) -> TlsIncoming {
        TlsIncoming::start(listener, configs, Some(audit), limits)
    }

    fn start(
        listener: TcpListener,
        configs: watch::Receiver<Arc<ServerConfig>>,
        audit: Option<AuditSink>,
        limits: ConnectionLimits,
    ) -> TlsIncoming {
        let (ready, connections) = mpsc::channel(READY_CONNECTIONS);
        let accept_loop = tokio::spawn(accept_loop(listener, configs, audit, limits, ready));
        TlsIncoming {
            connections,
            accept_loop,
        }
    }
}

impl Drop for TlsIncoming {
    fn drop(&mut self) {
        // Aborting drops the listener and the JoinSet, which aborts pending handshakes.
        self.accept_loop.abort();
    }
}

impl std::fmt::Debug for TlsIncoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIncoming").finish_non_exhaustive()
    }
}

impl Stream for TlsIncoming {
    /// Never an error: failures are per connection, logged and dropped. tonic wants a `Result`.
    type Item = Result<AuthenticatedStream, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.connections.poll_recv(cx).map(|next| next.map(Ok))
    }
}

/// A handshake in progress, as the accept loop keeps it to choose whom to close for room.
struct Pending {
    address: IpAddr,
    since: Instant,
    /// Set once the peer has sent its first byte.
    spoke: Arc<AtomicBool>,
    abort: AbortHandle,
}

/// The handshakes in progress, by task.
#[derive(Default)]
struct PendingHandshakes(HashMap<task::Id, Pending>);

impl PendingHandshakes {
    fn count_from(&self, address: IpAddr) -> usize {
        self.0.values().filter(|p| p.address == address).count()
    }

    /// Closes the oldest handshake (of `address`, if given) whose peer has sent nothing yet;
    /// false when every one has started speaking.
    fn close_oldest_silent(&mut self, address: Option<IpAddr>) -> bool {
        let oldest = self
            .0
            .iter()
            .filter(|(_, p)| address.is_none_or(|a| p.address == a))
            .filter(|(_, p)| !p.spoke.load(Ordering::Relaxed))
            .min_by_key(|(_, p)| p.since)
            .map(|(id, _)| *id);
        match oldest.and_then(|id| self.0.remove(&id)) {
            Some(closed) => {
                debug!(peer = %closed.address, "closed a silent connection to make room");
                closed.abort.abort();
                true
            }
            None => false,
        }
    }

    /// Makes room for a new handshake from `address`; false when there is none to make.
    fn make_room(&mut self, address: IpAddr, limits: &ConnectionLimits) -> bool {
        if self.count_from(address) >= limits.max_handshakes_per_address
            && !self.close_oldest_silent(Some(address))
        {
            return false;
        }
        self.0.len() < limits.max_handshakes || self.close_oldest_silent(None)
    }
}

/// Connections open per peer address (in handshake or served).
#[derive(Clone, Default)]
struct AddressCounts(Arc<Mutex<HashMap<IpAddr, usize>>>);

/// One connection counted against its address; dropping it (the connection closed) uncounts it.
struct AddressSlot {
    counts: AddressCounts,
    address: IpAddr,
}

impl AddressCounts {
    /// A slot for a new connection from `address`, unless it already has `max` open.
    fn take(&self, address: IpAddr, max: usize) -> Option<AddressSlot> {
        let mut counts = self.0.lock().expect("not poisoned");
        let open = counts.entry(address).or_default();
        if *open >= max {
            return None;
        }
        *open += 1;
        Some(AddressSlot {
            counts: self.clone(),
            address,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.0.lock().expect("not poisoned");
        if let Some(open) = counts.get_mut(&self.address) {
            *open -= 1;
            if *open == 0 {
                counts.remove(&self.address);
            }
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    configs: watch::Receiver<Arc<ServerConfig>>,
    audit: Option<AuditSink>,
    limits: ConnectionLimits,
    ready: mpsc::Sender<AuthenticatedStream>,
) {
    let mut handshakes = JoinSet::new();
    let mut pending = PendingHandshakes::default();
    let open = AddressCounts::default();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, remote_addr)) => {
                    let address = remote_addr.ip();
                    let Some(slot) = open.take(address, limits.max_connections_per_address) else {
                        warn!(peer = %remote_addr, "too many connections from this address; connection dropped");
                        continue;
                    };
                    if !pending.make_room(address, &limits) {
                        warn!(peer = %remote_addr, "too many TLS handshakes in progress; connection dropped");
                        continue;
                    }
                    let acceptor = TlsAcceptor::from(configs.borrow().clone());
                    let spoke = Arc::new(AtomicBool::new(false));
                    let abort = handshakes.spawn(handshake(
                        Accepted {
                            tcp,
                            remote_addr,
                            slot,
                            spoke: spoke.clone(),
                        },
                        acceptor,
                        audit.clone(),
                        limits,
                        ready.clone(),
                    ));
                    pending.0.insert(
                        abort.id(),
                        Pending {
                            address,
                            since: Instant::now(),
                            spoke,
                            abort,
                        },
                    );
                }
                Err(error) => {
                    warn!(%error, "accepting a TCP connection failed");
                    let peer_gone = matches!(
                        error.kind(),
                        io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::ConnectionReset
                            | io::ErrorKind::ConnectionRefused
                    );
                    if !peer_gone {
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    }
                }
            },
            // Reaps finished (and closed) handshakes so that only those in flight are kept.
            Some(done) = handshakes.join_next_with_id() => {
                let id = match done {
                    Ok((id, ())) => id,
                    Err(error) => error.id(),
                };
                pending.0.remove(&id);
            }
        }
    }
}

/// Records a refused handshake in the audit trail.
async fn refused(audit: Option<&AuditSink>, remote_addr: SocketAddr, reason: String) {
    if let Some(audit) = audit {
        // Nothing is answered; a refusal the hub could not record (it is stopping) is logged.
        let _ = audit
            .record_unless_database_away(AuditEntry {
                at: chrono::Utc::now().timestamp_micros(),
                agency_id: String::new(),
                jurisdiction: String::new(),
                fingerprint: String::new(),
                peer: remote_addr.to_string(),
                method: HANDSHAKE_METHOD.to_owned(),
                touched: String::new(),
                outcome: reason,
            })
            .await;
    }
}

/// A TCP connection just accepted.
struct Accepted {
    tcp: TcpStream,
    remote_addr: SocketAddr,
    slot: AddressSlot,
    /// Set when the peer sends its first byte.
    spoke: Arc<AtomicBool>,
}

async fn handshake(
    accepted: Accepted,
    acceptor: TlsAcceptor,
    audit: Option<AuditSink>,
    limits: ConnectionLimits,
    ready: mpsc::Sender<AuthenticatedStream>,
) {
    let Accepted {
        tcp,
        remote_addr,
        slot,
        spoke,
    } = accepted;
    // gRPC sends many small frames that should leave at once rather than wait for Nagle.
    if let Err(error) = tcp.set_nodelay(true) {
        warn!(peer = %remote_addr, %error, "could not set TCP_NODELAY");
    }
    let started = Instant::now();
    // A TLS client speaks first. A socket that stays silent has not started a handshake: it is
    // closed without an audit entry (there is nothing to refuse yet), and is the first to go when
    // room is needed.
    let mut first = [0u8; 1];
    let silent_timeout = limits.silent_timeout.min(limits.handshake_timeout);
    match tokio::time::timeout(silent_timeout, tcp.peek(&mut first)).await {
        Ok(Ok(read)) if read > 0 => spoke.store(true, Ordering::Relaxed),
        Ok(_) => return,
        Err(_) => {
            debug!(peer = %remote_addr, timeout = ?silent_timeout, "connection sent nothing; closed");
            return;
        }
    }
    let remaining = limits.handshake_timeout.saturating_sub(started.elapsed());
    let tls = match tokio::time::timeout(remaining, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            warn!(peer = %remote_addr, %error, "TLS handshake failed");
            refused(audit.as_ref(), remote_addr, error.to_string()).await;
            return;
        }
        Err(_) => {
            warn!(peer = %remote_addr, timeout = ?limits.handshake_timeout, "TLS handshake timed out");
            refused(audit.as_ref(), remote_addr, "handshake timed out".into()).await;
            return;
        }
    };
    let identity = match tls.get_ref().1.peer_certificates().and_then(<[_]>::first) {
        Some(leaf) => PeerIdentity::from_leaf_certificate(remote_addr, leaf),
        // Only with the console's configuration, which requests but does not require a
        // certificate (`server_config` requires one): the connection is served, and every
        // request on it refused with a page, as for a certificate that names no agency.
        None => PeerIdentity {
            remote_addr,
            cert_fingerprint: String::new(),
            agency: Err(NO_CERTIFICATE.to_owned()),
        },
    };
    if let Err(reason) = &identity.agency {
        warn!(peer = %remote_addr, fingerprint = %identity.cert_fingerprint, %reason, "client certificate names no agency");
    }
    // Fails only when the server has stopped taking connections; the connection is then dropped.
    let _ = ready
        .send(AuthenticatedStream {
            inner: tls,
            identity,
            _slot: slot,
        })
        .await;
}

/// A gRPC channel to the hub at `endpoint` (e.g. `https://127.0.0.1:50051`) that trusts `ca_pem`
/// and authenticates as the agency whose certificate and key are given.
pub async fn client_channel(
    endpoint: &str,
    ca_pem: &[u8],
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<Channel, TlsError> {
    connect(
        endpoint,
        ca_pem,
        Some(Identity::from_pem(cert_pem, key_pem)),
    )
    .await
}

/// A gRPC channel that presents no client certificate: the hub refuses it, which tests and
/// diagnostics rely on. The refusal may surface at the first call rather than here, because in
/// TLS 1.3 the server judges the client's certificate after the client considers itself connected.
pub async fn client_channel_without_identity(
    endpoint: &str,
    ca_pem: &[u8],
) -> Result<Channel, TlsError> {
    connect(endpoint, ca_pem, None).await
}

async fn connect(
    endpoint: &str,
    ca_pem: &[u8],
    identity: Option<Identity>,
) -> Result<Channel, TlsError> {
    install_crypto_provider();
    // tonic silently skips CA PEM it cannot parse and would then fail with a vaguer error.
    parse_certs(ca_pem, "CA certificate")?;
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name(SERVER_NAME);
    if let Some(identity) = identity {
        tls = tls.identity(identity);
    }
    let channel = Channel::from_shared(endpoint.to_owned())
        .map_err(|e| TlsError::Endpoint {
            endpoint: endpoint.to_owned(),
            reason: e.to_string(),
        })?
        .connect_timeout(HANDSHAKE_TIMEOUT)
        .tls_config(tls)?
        .connect()
        .await?;
    Ok(channel)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{CertifiedKey, DEFAULT_SERVER_NAMES, DevCa, Validity};
    use futures::StreamExt;
    use rustls::pki_types::ServerName;
    use std::time::SystemTime;
    use tokio::io::AsyncReadExt;
    use tokio_rustls::TlsConnector;

    struct Hub {
        ca: DevCa,
        addr: SocketAddr,
        incoming: TlsIncoming,
    }

    async fn hub_with_timeout(handshake_timeout: Duration) -> Hub {
        let ca = DevCa::generate("test CA").unwrap();
        let server = ca.issue_server(&DEFAULT_SERVER_NAMES).unwrap();
        let config = server_config(
            ca.cert_pem().as_bytes(),
            server.cert_pem.as_bytes(),
            server.key_pem.as_bytes(),
        )
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let incoming = TlsIncoming::with_limits(
            listener,
            config,
            ConnectionLimits {
                handshake_timeout,
                ..ConnectionLimits::default()
            },
        );
        Hub { ca, addr, incoming }
    }

    async fn hub() -> Hub {
        hub_with_timeout(HANDSHAKE_TIMEOUT).await
    }

    fn agency(uri: &str) -> Agency {
        Agency::from_uri(uri).unwrap()
    }

    fn client_config(ca_pem: &str, identity: Option<&CertifiedKey>) -> Arc<rustls::ClientConfig> {
        let mut roots = RootCertStore::empty();
        for ca in parse_certs(ca_pem.as_bytes(), "CA").unwrap() {
            roots.add(ca).unwrap();
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
        let mut config = match identity {
            Some(issued) => builder
                .with_client_auth_cert(
                    parse_certs(issued.cert_pem.as_bytes(), "cert").unwrap(),
                    PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).unwrap(),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        Arc::new(config)
    }

    async fn tls_connect(
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
    ) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(addr).await?;
        TlsConnector::from(config)
            .connect(ServerName::try_from(SERVER_NAME).unwrap(), tcp)
            .await
    }

    /// Connects and waits for the server's verdict, which in TLS 1.3 arrives after the client's
    /// side of the handshake is done; returns the refusal as the client saw it.
    async fn refusal(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> String {
        match tls_connect(addr, config).await {
            Err(error) => error.to_string(),
            Ok(mut tls) => {
                let mut byte = [0u8; 1];
                match tls.read(&mut byte).await {
                    Err(error) => error.to_string(),
                    Ok(0) => "closed".to_owned(),
                    Ok(_) => panic!("the server accepted the connection"),
                }
            }
        }
    }

    async fn next_identity(incoming: &mut TlsIncoming) -> PeerIdentity {
        let Some(Ok(stream)) = incoming.next().await else {
            panic!("the incoming stream ended");
        };
        stream.identity().clone()
    }

    /// Pending handshakes of tasks that never end, as the accept loop keeps them.
    fn in_flight(
        set: &mut JoinSet<()>,
        handshakes: &mut PendingHandshakes,
        address: [u8; 4],
        spoke: bool,
    ) -> task::Id {
        let abort = set.spawn(std::future::pending());
        let id = abort.id();
        handshakes.0.insert(
            id,
            Pending {
                address: IpAddr::from(address),
                since: Instant::now(),
                spoke: Arc::new(AtomicBool::new(spoke)),
                abort,
            },
        );
        id
    }

    #[tokio::test]
    async fn room_is_made_by_closing_the_oldest_silent_handshake_of_the_address_first() {
        let limits = ConnectionLimits {
            max_handshakes: 3,
            max_handshakes_per_address: 2,
            ..ConnectionLimits::default()
        };
        let (a, b, c) = ([10, 0, 0, 1], [10, 0, 0, 2], [10, 0, 0, 3]);
        let mut set = JoinSet::new();
        let mut handshakes = PendingHandshakes::default();
        let b_silent = in_flight(&mut set, &mut handshakes, b, false);
        let a_silent = in_flight(&mut set, &mut handshakes, a, false);
        let a_speaking = in_flight(&mut set, &mut handshakes, a, true);

        // A full address gives up its own silent handshake, not another address's older one.
        assert!(handshakes.make_room(IpAddr::from(a), &limits));
        assert!(!handshakes.0.contains_key(&a_silent));
        assert!(handshakes.0.contains_key(&b_silent));
        // Once every handshake of the address is speaking, a new one from it is refused.
        in_flight(&mut set, &mut handshakes, a, true);
        assert!(!handshakes.make_room(IpAddr::from(a), &limits));
        // A new address finds all slots in use and takes the oldest silent one's.
        assert!(handshakes.make_room(IpAddr::from(c), &limits));
        assert!(!handshakes.0.contains_key(&b_silent));
        assert!(handshakes.0.contains_key(&a_speaking));
        // With only speaking handshakes left and no room, it is refused.
        in_flight(&mut set, &mut handshakes, c, true);
        assert!(!handshakes.make_room(IpAddr::from(b), &limits));
        // The two closed ones were aborted (the others never end).
        for _ in 0..2 {
            let closed = set.join_next().await.unwrap().unwrap_err();
            assert!(closed.is_cancelled());
        }
    }

    #[tokio::test]
    async fn connections_are_counted_per_address_until_they_close() {
        let counts = AddressCounts::default();
        let address = IpAddr::from([127, 0, 0, 1]);
        let first = counts.take(address, 2).unwrap();
        let second = counts.take(address, 2).unwrap();
        assert!(counts.take(address, 2).is_none());
        assert!(counts.take(IpAddr::from([127, 0, 0, 2]), 2).is_some());
        drop(first);
        let third = counts.take(address, 2).unwrap();
        drop((second, third));
        assert!(counts.0.lock().unwrap().is_empty());
    }

    #[test]
    fn the_uri_prefix_matches_the_domain() {
        let agency = agency("quotahub://agency/140100/finance");
        assert!(agency.uri().starts_with(AGENCY_URI_PREFIX));
    }

    #[tokio::test]
    async fn an_agency_certificate_is_accepted_and_names_its_agency() {
        let mut hub = hub().await;
        let finance = agency("quotahub://agency/140105/finance");
        let issued = hub
            .ca
            .issue_agency(&finance, Validity::default_leaf())
            .unwrap();
        let client = tls_connect(hub.addr, client_config(hub.ca.cert_pem(), Some(&issued)))
            .await
            .unwrap();

        let identity = next_identity(&mut hub.incoming).await;
        assert_eq!(identity.agency, Ok(finance));
        assert_eq!(
            identity.remote_addr,
            client.get_ref().0.local_addr().unwrap()
        );
        let der = parse_certs(issued.cert_pem.as_bytes(), "cert").unwrap();
        assert_eq!(
            identity.cert_fingerprint,
            hex::encode(Sha256::digest(&der[0]))
        );
        assert_eq!(client.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    }

    #[tokio::test]
    async fn a_client_without_a_certificate_is_refused() {
        let mut hub = hub().await;
        let refused = refusal(hub.addr, client_config(hub.ca.cert_pem(), None)).await;
        assert!(refused.contains("CertificateRequired"), "{refused}");

        // The refused connection was never yielded: the next one is the good client's.
        let hr = agency("quotahub://agency/140100/hr");
        let issued = hub.ca.issue_agency(&hr, Validity::default_leaf()).unwrap();
        let _client = tls_connect(hub.addr, client_config(hub.ca.cert_pem(), Some(&issued)))
            .await
            .unwrap();
        assert_eq!(next_identity(&mut hub.incoming).await.agency, Ok(hr));
    }

    #[tokio::test]
    async fn a_certificate_from_another_ca_is_refused() {
        let hub = hub().await;
        let stranger = DevCa::generate("stranger CA").unwrap();
        let issued = stranger
            .issue_agency(
                &agency("quotahub://agency/140100/finance"),
                Validity::default_leaf(),
            )
            .unwrap();
        let refused = refusal(hub.addr, client_config(hub.ca.cert_pem(), Some(&issued))).await;
        assert!(refused.contains("UnknownCA"), "{refused}");
    }

    #[tokio::test]
    async fn an_expired_certificate_is_refused() {
        let hub = hub().await;
        let day = Duration::from_secs(86_400);
        let expired = Validity {
            not_before: SystemTime::now() - 30 * day,
            not_after: SystemTime::now() - day,
        };
        let issued = hub
            .ca
            .issue_agency(&agency("quotahub://agency/140100/audit"), expired)
            .unwrap();
        let refused = refusal(hub.addr, client_config(hub.ca.cert_pem(), Some(&issued))).await;
        assert!(refused.contains("CertificateExpired"), "{refused}");
    }

    #[tokio::test]
    async fn a_server_certificate_cannot_serve_as_a_client_certificate() {
        let hub = hub().await;
        let server_cert = hub.ca.issue_server(&["localhost"]).unwrap();
        let refused = refusal(
            hub.addr,
            client_config(hub.ca.cert_pem(), Some(&server_cert)),
        )
        .await;
        // The server certificate lacks the client-auth purpose.
        assert!(refused.contains("UnsupportedCertificate"), "{refused}");
    }

    #[tokio::test]
    async fn a_certificate_without_an_agency_connects_but_names_none() {
        let mut hub = hub().await;
        let issued = hub
            .ca
            .issue_client_with_uris(&["https://example.org/agency"], Validity::default_leaf())
            .unwrap();
        let _client = tls_connect(hub.addr, client_config(hub.ca.cert_pem(), Some(&issued)))
            .await
            .unwrap();
        let reason = next_identity(&mut hub.incoming).await.agency.unwrap_err();
        assert!(reason.contains("names no agency"), "{reason}");
    }

    #[tokio::test]
    async fn a_stalled_handshake_neither_blocks_others_nor_lingers() {
        let mut hub = hub_with_timeout(Duration::from_millis(300)).await;
        // Connects but never speaks TLS.
        let mut silent = TcpStream::connect(hub.addr).await.unwrap();

        let hr = agency("quotahub://agency/140100/hr");
        let issued = hub.ca.issue_agency(&hr, Validity::default_leaf()).unwrap();
        let _client = tls_connect(hub.addr, client_config(hub.ca.cert_pem(), Some(&issued)))
            .await
            .unwrap();
        assert_eq!(next_identity(&mut hub.incoming).await.agency, Ok(hr));

        // The handshake timeout closes the silent connection.
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut byte))
            .await
            .expect("the server kept a stalled handshake open");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }

    fn identity_of(issued: &CertifiedKey) -> PeerIdentity {
        let der = parse_certs(issued.cert_pem.as_bytes(), "cert").unwrap();
        PeerIdentity::from_leaf_certificate(([127, 0, 0, 1], 1).into(), &der[0])
    }

    #[test]
    fn the_first_agency_uri_wins_and_other_uris_are_ignored() {
        let ca = DevCa::generate("test CA").unwrap();
        let issued = ca
            .issue_client_with_uris(
                &[
                    "https://example.org/not-an-agency",
                    "quotahub://agency/140105/staffing-office",
                    "quotahub://agency/140100/finance",
                ],
                Validity::default_leaf(),
            )
            .unwrap();
        let identity = identity_of(&issued);
        assert_eq!(
            identity.agency,
            Ok(agency("quotahub://agency/140105/staffing-office"))
        );
        assert_eq!(identity.cert_fingerprint.len(), 64);
    }

    #[test]
    fn a_missing_or_malformed_agency_uri_is_explained() {
        let ca = DevCa::generate("test CA").unwrap();
        let none = ca
            .issue_client_with_uris(&[], Validity::default_leaf())
            .unwrap();
        let reason = identity_of(&none).agency.unwrap_err();
        assert!(reason.contains("names no agency"), "{reason}");

        let bad = ca
            .issue_client_with_uris(
                &["quotahub://agency/140100/police"],
                Validity::default_leaf(),
            )
            .unwrap();
        let reason = identity_of(&bad).agency.unwrap_err();
        assert!(reason.contains("police"), "{reason}");
    }

    #[tokio::test]
    async fn tonic_serves_the_stream_and_requests_see_the_peer_identity() {
        use tonic_health::pb::health_client::HealthClient;
        use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

        let hub = hub().await;
        let discipline = agency("quotahub://agency/140100/discipline");
        let issued = hub
            .ca
            .issue_agency(&discipline, Validity::default_leaf())
            .unwrap();

        let (seen_tx, mut seen_rx) = mpsc::unbounded_channel();
        let record_identity = move |request: tonic::Request<()>| {
            let _ = seen_tx.send(request.extensions().get::<PeerIdentity>().cloned());
            Ok(request)
        };
        let (_reporter, health) = tonic_health::server::health_reporter();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .layer(tonic::service::InterceptorLayer::new(record_identity))
                .add_service(health)
                .serve_with_incoming_shutdown(hub.incoming, async {
                    let _ = stopped.await;
                }),
        );

        let endpoint = format!("https://127.0.0.1:{}", hub.addr.port());
        let ca_pem = hub.ca.cert_pem().as_bytes();
        let channel = client_channel(
            &endpoint,
            ca_pem,
            issued.cert_pem.as_bytes(),
            issued.key_pem.as_bytes(),
        )
        .await
        .unwrap();
        let response = HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await
            .unwrap();
        assert_eq!(response.into_inner().status, ServingStatus::Serving as i32);
        let seen = seen_rx
            .recv()
            .await
            .unwrap()
            .expect("no PeerIdentity in the request");
        assert_eq!(seen.agency, Ok(discipline));

        let anonymous = async {
            let channel = client_channel_without_identity(&endpoint, ca_pem)
                .await
                .map_err(|e| e.to_string())?;
            HealthClient::new(channel)
                .check(HealthCheckRequest::default())
                .await
                .map_err(|e| e.to_string())
        };
        // Refused at connect or at the first call, depending on when the alert arrives.
        assert!(anonymous.await.is_err());

        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }
}
