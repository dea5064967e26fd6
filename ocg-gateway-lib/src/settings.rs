//! [`GatewaySettings`]: the gateway's own keys, read from the config once.

use std::net::{IpAddr, SocketAddr};

use ocg_core::Config;
use ocg_core::config::Secret;

use crate::GatewayError;
use crate::discord::DiscordConfig;
use crate::email::EmailConfig;
use crate::irc::IrcConfig;
use crate::matrix::MatrixConfig;
use crate::slack::SlackConfig;
use crate::telegram::TelegramConfig;

/// Who may post to `/hooks/agent`, and into which sessions.
#[derive(Debug, Clone)]
pub struct HooksSettings {
    /// `OCG_HOOKS_TOKEN`.
    pub token: Secret,
    /// `OCG_HOOKS_SESSION_PREFIXES` (comma-separated); empty means `hook:`.
    pub session_prefixes: Vec<String>,
}

/// The agents a gateway uses over TCP instead of its socket.
#[derive(Debug, Clone)]
pub struct AgentsSettings {
    /// `OCG_AGENTS`: the agents' `OCG_AGENT_ADDR`s (`host:port`,
    /// comma-separated).
    pub addrs: Vec<String>,
    /// `OCG_AGENT_TOKEN`: the token their TCP listeners require.
    pub token: Secret,
}

/// Everything the gateway reads from the config besides its token.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// Where it listens (`OCG_HOST`, `OCG_PORT`).
    pub addr: SocketAddr,
    /// `OCG_ALLOW_PUBLIC_BIND`.
    pub allow_public_bind: bool,
    /// Reverse proxies whose `X-Forwarded-For` is believed
    /// (`OCG_TRUSTED_PROXIES`, comma-separated addresses).
    pub trusted_proxies: Vec<IpAddr>,
    /// Webhooks, when `OCG_HOOKS_TOKEN` is set.
    pub hooks: Option<HooksSettings>,
    /// The Telegram channel, when `TELEGRAM_BOT_TOKEN` is set.
    pub telegram: Option<TelegramConfig>,
    /// The IRC channel, when `IRC_SERVER` is set.
    pub irc: Option<IrcConfig>,
    /// The Matrix channel, when `MATRIX_HOMESERVER` is set.
    pub matrix: Option<MatrixConfig>,
    /// The email channel, when `EMAIL_IMAP_SERVER` is set.
    pub email: Option<EmailConfig>,
    /// The Discord channel, when `DISCORD_BOT_TOKEN` is set.
    pub discord: Option<DiscordConfig>,
    /// The Slack channel, when `SLACK_BOT_TOKEN` is set.
    pub slack: Option<SlackConfig>,
    /// `OCG_PAIRING`: strangers get pairing codes (default) or nothing.
    pub pairing: bool,
    /// Several agents over TCP, when `OCG_AGENTS` is set; else the agent
    /// on `OCG_AGENT_SOCKET`.
    pub agents: Option<AgentsSettings>,
    /// Channels whose keys are set but wrong, with the reason (naming the
    /// key, never a secret): shown as failing, while the rest runs.
    pub channel_errors: Vec<(String, String)>,
}

impl GatewaySettings {
    /// Read and check the gateway's keys; a bad value is an error naming
    /// its key, except in a channel's keys: that channel is then listed in
    /// [`channel_errors`](Self::channel_errors) instead.
    pub fn from_config(config: &Config) -> Result<Self, GatewayError> {
        let mut channel_errors = Vec::new();
        let telegram = or_listed(
            "telegram",
            TelegramConfig::from_config(config),
            &mut channel_errors,
        );
        let irc = or_listed("irc", IrcConfig::from_config(config), &mut channel_errors);
        let matrix = or_listed(
            "matrix",
            MatrixConfig::from_config(config),
            &mut channel_errors,
        );
        let email = or_listed(
            "email",
            EmailConfig::from_config(config),
            &mut channel_errors,
        );
        let discord = or_listed(
            "discord",
            DiscordConfig::from_config(config),
            &mut channel_errors,
        );
        let slack = or_listed(
            "slack",
            SlackConfig::from_config(config),
            &mut channel_errors,
        );
        let raw = config.raw();
        let trusted_proxies = raw
            .parse("OCG_TRUSTED_PROXIES", |value| {
                list(value)
                    .map(|p| {
                        p.parse::<IpAddr>()
                            .map_err(|_| format!("{p:?} is not an IP address"))
                    })
                    .collect::<Result<Vec<_>, _>>()
            })?
            .unwrap_or_default();
        let session_prefixes = raw
            .parse("OCG_HOOKS_SESSION_PREFIXES", |value| {
                Ok::<_, String>(list(value).map(str::to_owned).collect())
            })?
            .unwrap_or_default();
        let hooks = raw
            .parse("OCG_HOOKS_TOKEN", |value| {
                Ok::<_, String>(Secret::new(value))
            })?
            .map(|token| HooksSettings {
                token,
                session_prefixes,
            });
        let agents = raw
            .parse("OCG_AGENTS", |value| {
                let addrs: Vec<String> = list(value).map(str::to_owned).collect();
                match addrs.iter().find(|a| !is_host_port(a)) {
                    Some(bad) => Err(format!("{bad:?} is not host:port")),
                    None if addrs.is_empty() => Err("no agent address".to_owned()),
                    None => Ok(addrs),
                }
            })?
            .map(|addrs| {
                let token = raw
                    .get("OCG_AGENT_TOKEN")
                    .map(|setting| setting.value.trim())
                    .filter(|t| t.len() >= 16)
                    .ok_or_else(|| {
                        missing_key(
                            "OCG_AGENT_TOKEN",
                            "OCG_AGENTS needs the agents' token (at least 16 characters)",
                        )
                    })?;
                Ok::<_, GatewayError>(AgentsSettings {
                    addrs,
                    token: Secret::new(token),
                })
            })
            .transpose()?;
        Ok(GatewaySettings {
            addr: SocketAddr::new(config.host, config.port),
            allow_public_bind: config.allow_public_bind,
            trusted_proxies,
            hooks,
            pairing: raw
                .parse("OCG_PAIRING", ocg_core::config::parse_bool)?
                .unwrap_or(true),
            telegram,
            irc,
            matrix,
            email,
            discord,
            slack,
            channel_errors,
            agents,
        })
    }
}

/// `host:port` with a port number.
fn is_host_port(addr: &str) -> bool {
    addr.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty() && !host.contains('/') && port.parse::<u16>().is_ok_and(|p| p > 0)
    })
}

/// The config of `pairs` as the environment, with `OCG_DATA_DIR=/srv/ocg`
/// (for the channels' config tests).
#[cfg(test)]
pub(crate) fn test_config(pairs: &[(&str, &str)]) -> Config {
    let sources = ocg_core::config::Sources {
        env: pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .chain([("OCG_DATA_DIR".to_owned(), "/srv/ocg".to_owned())])
            .collect(),
        ..ocg_core::config::Sources::default()
    };
    Config::load(&sources).expect("a valid test config")
}

/// Whether `host` is this machine (where plain text cannot be overheard).
pub(crate) fn is_loopback(host: &str) -> bool {
    let host = host.trim_matches(['[', ']']);
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// An `http(s)://` URL a token is sent to: plain `http://` only toward this
/// machine (a test server), since the token would travel in the clear.
pub(crate) fn parse_private_url(value: &str) -> Result<String, String> {
    let url = ocg_core::config::parse_http_url(value.trim())?;
    let host = reqwest::Url::parse(&url)
        .map_err(|e| format!("{url:?}: {e}"))?
        .host_str()
        .unwrap_or_default()
        .to_owned();
    if url.starts_with("http://") && !is_loopback(&host) {
        return Err(format!(
            "{url:?} is plain http to another machine: use https:// (the token would travel in the clear)"
        ));
    }
    Ok(url)
}

/// `host[:port]` (`[v6]:port` too); the port is `None` when not given.
/// `example` shows the form in the error.
pub(crate) fn host_port(value: &str, example: &str) -> Result<(String, Option<u16>), String> {
    let v = value.trim();
    let (host, port) = match v.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') || host.ends_with(']') => {
            let port = port
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("{port:?} is not a port"))?;
            (host.trim_matches(['[', ']']), Some(port))
        }
        _ => (v, None),
    };
    if host.is_empty() || host.contains(['/', ' ', '@']) {
        return Err(format!("{v:?} is not host:port ({example})"));
    }
    Ok((host.to_owned(), port))
}

/// The error of a required key that is missing: `key` `reason`.
pub(crate) fn missing_key(key: &str, reason: &str) -> GatewayError {
    GatewayError::Config(ocg_core::ConfigError::InvalidValue {
        key: key.into(),
        origin: ocg_core::config::Origin::Default,
        reason: reason.into(),
    })
}

/// A channel's settings, or `None` with the error added to `errors`.
fn or_listed<T>(
    name: &str,
    result: Result<Option<T>, GatewayError>,
    errors: &mut Vec<(String, String)>,
) -> Option<T> {
    result.unwrap_or_else(|e| {
        errors.push((name.to_owned(), e.to_string()));
        None
    })
}

/// The non-empty, trimmed items of a comma-separated value.
pub(crate) fn list(value: &str) -> impl Iterator<Item = &str> {
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ocg_core::config::Sources;

    fn settings(env: &[(&str, &str)]) -> Result<GatewaySettings, GatewayError> {
        let sources = Sources {
            file: None,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            flags: Vec::new(),
        };
        GatewaySettings::from_config(&Config::load(&sources).unwrap())
    }

    #[test]
    fn reads_the_gateway_keys() {
        let s = settings(&[
            ("OCG_TRUSTED_PROXIES", " 10.0.0.1, ::1 ,"),
            ("OCG_HOOKS_TOKEN", "hooks-secret"),
            ("OCG_HOOKS_SESSION_PREFIXES", "hook:, cron:"),
        ])
        .unwrap();
        assert_eq!(s.addr, "127.0.0.1:55003".parse().unwrap());
        assert_eq!(
            s.trusted_proxies,
            [
                "10.0.0.1".parse::<IpAddr>().unwrap(),
                "::1".parse().unwrap()
            ]
        );
        let hooks = s.hooks.unwrap();
        assert_eq!(hooks.token.expose(), "hooks-secret");
        assert_eq!(hooks.session_prefixes, ["hook:", "cron:"]);
        assert!(s.telegram.is_none());
        assert!(
            !format!(
                "{:?}",
                settings(&[("OCG_HOOKS_TOKEN", "hooks-secret")]).unwrap()
            )
            .contains("hooks-secret")
        );
        let none = settings(&[]).unwrap();
        assert!(none.hooks.is_none() && none.trusted_proxies.is_empty());
    }

    #[test]
    fn a_bad_proxy_names_its_key() {
        let error = settings(&[("OCG_TRUSTED_PROXIES", "10.0.0.1,proxy.lan")]).unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("OCG_TRUSTED_PROXIES") && message.contains("proxy.lan"),
            "{message}"
        );
    }
}
