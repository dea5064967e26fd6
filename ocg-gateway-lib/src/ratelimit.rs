//! The rate limits a platform announces (Discord's per-route buckets and
//! global limit, Slack's per-method tiers), kept so a request waits for
//! its route instead of being refused again: a channel obeys `429` and
//! the "remaining: 0" headers before it sends.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::lock;

/// The longest wait a platform may impose; a larger value is a fault.
const MAX_WAIT: Duration = Duration::from_secs(3600);

/// When each route, and every route, may be used again.
#[derive(Debug, Default)]
pub(crate) struct RouteLimits {
    routes: Mutex<HashMap<String, Instant>>,
    global: Mutex<Option<Instant>>,
}

impl RouteLimits {
    /// Wait until `route` may be used.
    pub(crate) async fn ready(&self, route: &str) {
        loop {
            let now = Instant::now();
            let until = {
                let mut routes = lock(&self.routes);
                routes.retain(|_, until| *until > now);
                let global = lock(&self.global).filter(|until| *until > now);
                routes.get(route).copied().max(global)
            };
            match until {
                Some(until) => tokio::time::sleep_until(until).await,
                None => return,
            }
        }
    }

    /// Hold `route` (every route when `None`) for `wait`.
    pub(crate) fn hold(&self, route: Option<&str>, wait: Duration) {
        let until = Instant::now() + wait.min(MAX_WAIT);
        match route {
            Some(route) => {
                let mut routes = lock(&self.routes);
                let slot = routes.entry(route.to_owned()).or_insert(until);
                *slot = (*slot).max(until);
            }
            None => {
                let mut global = lock(&self.global);
                *global = Some(global.map_or(until, |g| g.max(until)));
            }
        }
    }
}

/// Seconds as the platforms write them (`"1.25"`, `0.5`) as a wait;
/// `None` for a negative, infinite or unreadable value.
pub(crate) fn seconds(value: f64) -> Option<Duration> {
    (value.is_finite() && value >= 0.0).then(|| Duration::from_secs_f64(value.min(3600.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_held_route_waits_and_others_do_not() {
        let ms = Duration::from_millis;
        let limits = RouteLimits::default();
        limits.hold(Some("POST /channels/1/messages"), ms(200));
        let started = Instant::now();
        limits.ready("POST /channels/2/messages").await;
        assert!(started.elapsed() < ms(100), "another route goes at once");
        limits.ready("POST /channels/1/messages").await;
        assert!(started.elapsed() >= ms(200), "the held route waits");
        limits.hold(None, ms(200));
        limits.ready("POST /channels/2/messages").await;
        assert!(
            started.elapsed() >= ms(400),
            "a global hold holds every route"
        );
    }

    #[test]
    fn seconds_are_read_safely() {
        assert_eq!(seconds(1.5), Some(Duration::from_millis(1500)));
        assert_eq!(seconds(-1.0), None);
        assert_eq!(seconds(f64::NAN), None);
        assert_eq!(seconds(1e12), Some(Duration::from_secs(3600)));
    }
}
