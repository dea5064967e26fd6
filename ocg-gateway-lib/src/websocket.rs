//! The WebSocket client of the channels that keep a socket open to their
//! platform (Discord's Gateway, Slack's Socket Mode): `wss://` with the
//! system's certificate roots, or `ws://` to this machine only (a test
//! server). The URL can hold a ticket (Slack's), so it never reaches an
//! error or a log line.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// How long connecting (TCP, TLS and the upgrade) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// The largest message accepted from the platform.
const MAX_MESSAGE: usize = 8 << 20;

/// Any byte stream a socket runs over (TCP or TLS).
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// An open WebSocket to a platform.
pub(crate) struct Socket {
    stream: WebSocketStream<Box<dyn Io>>,
    /// When the platform last sent anything (a pong included).
    heard: tokio::time::Instant,
}

/// What the platform sent.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// A text message (both platforms speak JSON).
    Text(String),
    /// The platform closed the socket, with its close code when it gave one.
    Closed(Option<u16>, String),
}

impl Socket {
    /// Connect to `url` (`wss://`, or `ws://` to this machine).
    pub(crate) async fn connect(url: &str) -> Result<Socket, String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a WebSocket URL: {e}"))?;
        let host = parsed
            .host_str()
            .ok_or("a WebSocket URL without a host")?
            .to_owned();
        let tls = match parsed.scheme() {
            "wss" => true,
            "ws" if crate::settings::is_loopback(&host) => false,
            "ws" => {
                return Err(format!(
                    "plain ws:// to {host}: only wss:// leaves this machine"
                ));
            }
            other => return Err(format!("{other}:// is not a WebSocket URL")),
        };
        let port = parsed
            .port_or_known_default()
            .unwrap_or(if tls { 443 } else { 80 });
        let connect = async {
            let tcp = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port))
                .await
                .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?;
            let _ = tcp.set_nodelay(true);
            let io: Box<dyn Io> = if tls {
                let name = rustls::pki_types::ServerName::try_from(host.clone())
                    .map_err(|e| format!("{host}: {e}"))?;
                let stream = crate::tls::connector(None)?
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS with {host}: {e}"))?;
                Box::new(stream)
            } else {
                Box::new(tcp)
            };
            let config = WebSocketConfig::default()
                .max_message_size(Some(MAX_MESSAGE))
                .max_frame_size(Some(MAX_MESSAGE));
            let (socket, _) = tokio_tungstenite::client_async_with_config(url, io, Some(config))
                .await
                .map_err(|e| format!("WebSocket upgrade with {host}: {}", scrubbed(&e)))?;
            Ok(Socket {
                stream: socket,
                heard: tokio::time::Instant::now(),
            })
        };
        tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| format!("connecting to {host} took over {CONNECT_TIMEOUT:?}"))?
    }

    /// Send one text message.
    pub(crate) async fn send(&mut self, text: String) -> Result<(), String> {
        self.stream
            .send(Message::text(text))
            .await
            .map_err(|e| format!("sending on the socket: {}", scrubbed(&e)))
    }

    /// The next text message or the end of the socket; pings are answered
    /// and binary messages (neither platform sends them to a JSON client)
    /// skipped.
    pub(crate) async fn next(&mut self) -> Incoming {
        loop {
            let next = self.stream.next().await;
            if matches!(next, Some(Ok(_))) {
                self.heard = tokio::time::Instant::now();
            }
            match next {
                Some(Ok(Message::Text(text))) => return Incoming::Text(text.as_str().to_owned()),
                Some(Ok(Message::Close(frame))) => {
                    return match frame {
                        Some(frame) => Incoming::Closed(
                            Some(u16::from(frame.code)),
                            frame.reason.as_str().to_owned(),
                        ),
                        None => Incoming::Closed(None, String::new()),
                    };
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Incoming::Closed(None, scrubbed(&e)),
                None => return Incoming::Closed(None, "the connection ended".into()),
            }
        }
    }

    /// Send a ping (the answer counts as heard).
    pub(crate) async fn ping(&mut self) -> Result<(), String> {
        self.stream
            .send(Message::Ping(Vec::new().into()))
            .await
            .map_err(|e| format!("sending a ping: {}", scrubbed(&e)))
    }

    /// How long since the platform last sent anything.
    pub(crate) fn silent_for(&self) -> Duration {
        self.heard.elapsed()
    }

    /// Close with `code` (a code of 4000 or above keeps a Discord session
    /// resumable; 1000 would end it).
    pub(crate) async fn close(mut self, code: u16) {
        let frame = tokio_tungstenite::tungstenite::protocol::CloseFrame {
            code: CloseCode::from(code),
            reason: "".into(),
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), self.stream.close(Some(frame))).await;
    }
}

/// A socket error as text, without any URL in it.
fn scrubbed(error: &tokio_tungstenite::tungstenite::Error) -> String {
    use tokio_tungstenite::tungstenite::Error as E;
    match error {
        E::Http(response) => format!("the server answered {}", response.status()),
        E::Url(_) => "not a valid WebSocket URL".into(),
        other => other.to_string(),
    }
}
