//! `ocg chat`: a terminal conversation with any [`Agent`].
//!
//! Interactive, it streams the answer as it arrives, shows tool activity,
//! and understands `/new`, `/reset`, `/sessions`, `/switch <key>`,
//! `/compact`, `/help` and `/quit`. In a pipe (`echo hi | ocg chat`) it sends
//! all of standard input as one message and prints only the reply.

use std::io::{BufRead, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use ocg_core::{Agent, ChatEvent, ChatRequest};

use crate::AgentClient;

const HELP: &str = "\
/new             start a new session
/reset           forget this session's messages
/sessions        list sessions
/switch <key>    continue another session
/compact         summarize and archive older turns
/help            this help
/quit            leave (also Ctrl-D)";

/// A terminal chat over an agent client.
#[derive(Debug)]
pub struct TerminalChat {
    client: AgentClient,
    session: String,
}

impl TerminalChat {
    /// Chat with `client` in `session`.
    pub fn new(client: AgentClient, session: impl Into<String>) -> Self {
        TerminalChat {
            client,
            session: session.into(),
        }
    }

    /// The current session key.
    pub fn session(&self) -> &str {
        &self.session
    }

    /// One message, reply text only (pipe mode). Tool activity and errors go
    /// to `err`.
    pub async fn ask(
        &self,
        text: &str,
        out: &mut impl Write,
        err: &mut impl Write,
    ) -> std::io::Result<bool> {
        self.turn(text, out, err, false).await
    }

    /// The interactive loop over `input` until it ends or `/quit`.
    pub async fn run(
        &mut self,
        input: impl BufRead,
        out: &mut impl Write,
        err: &mut impl Write,
    ) -> std::io::Result<()> {
        writeln!(
            out,
            "OCG chat, session {}. /help lists commands.",
            self.session
        )?;
        prompt(out)?;
        for line in input.lines() {
            let line = line?;
            let text = line.trim();
            if text.is_empty() {
                prompt(out)?;
                continue;
            }
            if text.starts_with('/') && !self.command(text, out, err).await? {
                return Ok(());
            } else if !text.starts_with('/') {
                self.turn(text, out, err, true).await?;
            }
            prompt(out)?;
        }
        writeln!(out)?;
        Ok(())
    }

    /// Run a slash command; `false` means quit.
    async fn command(
        &mut self,
        text: &str,
        out: &mut impl Write,
        err: &mut impl Write,
    ) -> std::io::Result<bool> {
        let (name, argument) = text.split_once(' ').unwrap_or((text, ""));
        match name {
            "/quit" | "/exit" => return Ok(false),
            "/help" => writeln!(out, "{HELP}")?,
            "/new" => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis());
                self.session = format!("cli:{now}");
                writeln!(out, "new session {}", self.session)?;
            }
            "/switch" if !argument.trim().is_empty() => {
                self.session = argument.trim().to_owned();
                writeln!(out, "session {}", self.session)?;
            }
            "/reset" => match self.client.reset_session(&self.session).await {
                Ok(()) => writeln!(out, "session {} reset", self.session)?,
                Err(ocg_core::Error::NotFound(_)) => {
                    writeln!(out, "session {} is empty", self.session)?
                }
                Err(e) => writeln!(err, "error: {e}")?,
            },
            "/compact" => match self.client.compact(&self.session).await {
                Ok(0) => writeln!(out, "nothing to compact yet")?,
                Ok(n) => writeln!(out, "archived {n} messages behind a summary")?,
                Err(e) => writeln!(err, "error: {e}")?,
            },
            "/sessions" => match self.client.sessions().await {
                Ok(list) if list.is_empty() => writeln!(out, "no sessions yet")?,
                Ok(list) => {
                    for s in list {
                        let mark = if s.key == self.session { "*" } else { " " };
                        let title = s.title.map(|t| format!("  \"{t}\"")).unwrap_or_default();
                        writeln!(out, "{mark} {}  ({} messages){title}", s.key, s.messages)?;
                    }
                }
                Err(e) => writeln!(err, "error: {e}")?,
            },
            _ => writeln!(err, "unknown command {text:?}; /help lists commands")?,
        }
        Ok(true)
    }

    /// Stream one turn; `Ok(false)` when it ended in an error.
    async fn turn(
        &self,
        text: &str,
        out: &mut impl Write,
        err: &mut impl Write,
        interactive: bool,
    ) -> std::io::Result<bool> {
        let mut events = match self
            .client
            .chat_stream(ChatRequest::user(&self.session, text))
            .await
        {
            Ok(events) => events,
            Err(e) => {
                writeln!(err, "error: {e}")?;
                return Ok(false);
            }
        };
        let mut wrote = false;
        while let Some(event) = events.next().await {
            match event {
                ChatEvent::Delta { text } => {
                    write!(out, "{text}")?;
                    out.flush()?;
                    wrote = true;
                }
                ChatEvent::ToolStart {
                    name, arguments, ..
                } => {
                    writeln!(err, "[tool {name} {arguments}]")?;
                }
                ChatEvent::ToolEnd { name, ok, .. } => {
                    writeln!(err, "[tool {name} {}]", if ok { "done" } else { "failed" })?;
                }
                ChatEvent::Done { message, .. } => {
                    if !wrote {
                        write!(out, "{}", message.content)?;
                    }
                    writeln!(out)?;
                    if interactive {
                        writeln!(out)?;
                    }
                    return Ok(true);
                }
                ChatEvent::Error { code, message } => {
                    if wrote {
                        writeln!(out)?;
                    }
                    writeln!(err, "error ({code}): {message}")?;
                    return Ok(false);
                }
                _ => {}
            }
        }
        writeln!(err, "error: the agent closed the stream")?;
        Ok(false)
    }
}

fn prompt(out: &mut impl Write) -> std::io::Result<()> {
    write!(out, "you> ")?;
    out.flush()
}

#[cfg(all(test, feature = "runtime"))]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::context::ContextBudget;
    use crate::server::{self, AgentSocket};
    use crate::sessions::SqliteSessionStore;
    use crate::testing::ScriptedProvider;
    use crate::{AgentRuntime, NoTools, RuntimeConfig};

    #[tokio::test]
    async fn commands_and_turns_over_a_real_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.sock");
        let runtime = AgentRuntime::new(
            Arc::new(ScriptedProvider::default()),
            Arc::new(SqliteSessionStore::in_memory().unwrap()),
            Arc::new(NoTools),
            None,
            RuntimeConfig {
                budget: ContextBudget {
                    system_prompt: "s".into(),
                    context_window: 8192,
                    max_answer_tokens: 64,
                    compaction_threshold: 0.75,
                },
                max_tool_rounds: 2,
                agents_file: None,
                recall: Default::default(),
            },
        );
        let socket = AgentSocket::bind(&path).await.unwrap();
        tokio::spawn(socket.serve(server::router(runtime), std::future::pending()));

        let mut chat = TerminalChat::new(AgentClient::new(&path).unwrap(), "cli:test");
        let (mut out, mut err) = (Vec::new(), Vec::new());
        assert!(
            chat.ask("piped question", &mut out, &mut err)
                .await
                .unwrap()
        );
        assert_eq!(String::from_utf8_lossy(&out), "echo: piped question\n");

        let input =
            "hello\n/sessions\n/new\n/switch cli:test\n/reset\n/bogus\n/quit\nnot reached\n";
        let (mut out, mut err) = (Vec::new(), Vec::new());
        chat.run(input.as_bytes(), &mut out, &mut err)
            .await
            .unwrap();
        let out = String::from_utf8_lossy(&out);
        let err = String::from_utf8_lossy(&err);
        assert!(out.contains("echo: hello"), "{out}");
        assert!(out.contains("* cli:test  (4 messages)"), "{out}");
        assert!(out.contains("new session cli:"), "{out}");
        assert!(out.contains("session cli:test reset"), "{out}");
        assert!(!out.contains("not reached"));
        assert!(err.contains("unknown command \"/bogus\""), "{err}");
        assert_eq!(chat.session(), "cli:test");
    }
}
