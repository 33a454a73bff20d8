//! Upstream name resolution in `system` dial mode: MagicDNS names go through
//! the system resolver, and each answer is reused for the configured TTL and
//! then asked again (nginx `resolver ... valid=30s`), so an upstream that
//! moves keeps working without a restart. A failed lookup with an expired
//! answer still in hand serves the old answer (logged) rather than failing.
//! Used by the upstream connector before every new connection.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Looks names up: the system resolver, or a stand-in in tests.
pub type LookupFn = Arc<
    dyn Fn(String, u16) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send>>
        + Send
        + Sync,
>;

/// Cached host -> addresses, shared by every upstream of a config.
#[derive(Clone)]
pub struct DnsCache {
    ttl: Duration,
    lookup: LookupFn,
    entries: Arc<Mutex<HashMap<(String, u16), Cached>>>,
}

#[derive(Clone)]
struct Cached {
    addrs: Vec<SocketAddr>,
    fetched: Instant,
}

impl std::fmt::Debug for DnsCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsCache").field("ttl", &self.ttl).finish()
    }
}

impl DnsCache {
    /// The system resolver (`getaddrinfo`, which follows MagicDNS).
    pub fn system(ttl: Duration) -> Self {
        Self::with_lookup(
            ttl,
            Arc::new(|host, port| {
                Box::pin(async move {
                    tokio::net::lookup_host((host.as_str(), port))
                        .await
                        .map(Iterator::collect)
                })
            }),
        )
    }

    pub fn with_lookup(ttl: Duration, lookup: LookupFn) -> Self {
        DnsCache {
            ttl,
            lookup,
            entries: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The addresses of `host` (no brackets for IPv6) on `port`. IP literals
    /// are not looked up.
    pub async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let key = (host.to_owned(), port);
        let cached = self.lock().get(&key).cloned();
        if let Some(entry) = &cached {
            if entry.fetched.elapsed() < self.ttl {
                return Ok(entry.addrs.clone());
            }
        }
        match (self.lookup)(host.to_owned(), port).await {
            Ok(addrs) if !addrs.is_empty() => {
                self.lock().insert(
                    key,
                    Cached {
                        addrs: addrs.clone(),
                        fetched: Instant::now(),
                    },
                );
                Ok(addrs)
            }
            Ok(_) => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{host} has no address"),
            )),
            Err(e) => match cached {
                Some(stale) => {
                    tracing::warn!(host, "DNS lookup failed ({e}); using the previous answer");
                    Ok(stale.addrs)
                }
                None => Err(io::Error::new(e.kind(), format!("resolving {host}: {e}"))),
            },
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u16), Cached>> {
        // A panic while holding the lock leaves only a cache behind: reuse it.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A resolver whose answer the test changes, counting lookups; fails
    /// when the answer is empty.
    fn scripted() -> (DnsCache, Arc<Mutex<Vec<SocketAddr>>>, Arc<AtomicU32>) {
        let answer = Arc::new(Mutex::new(vec!["100.64.0.1:443".parse().unwrap()]));
        let count = Arc::new(AtomicU32::new(0));
        let (a, c) = (answer.clone(), count.clone());
        let cache = DnsCache::with_lookup(
            Duration::from_millis(100),
            Arc::new(move |_host, _port| {
                c.fetch_add(1, Ordering::SeqCst);
                let now = a.lock().unwrap().clone();
                Box::pin(async move {
                    if now.is_empty() {
                        Err(io::Error::other("SERVFAIL"))
                    } else {
                        Ok(now)
                    }
                })
            }),
        );
        (cache, answer, count)
    }

    #[tokio::test]
    async fn answers_are_reused_within_the_ttl_and_refreshed_after() {
        let (cache, answer, count) = scripted();
        let first = cache.resolve("docs.ts.net", 443).await.unwrap();
        assert_eq!(first, vec!["100.64.0.1:443".parse().unwrap()]);
        *answer.lock().unwrap() = vec!["100.64.0.2:443".parse().unwrap()];
        assert_eq!(cache.resolve("docs.ts.net", 443).await.unwrap(), first);
        assert_eq!(count.load(Ordering::SeqCst), 1);

        tokio::time::sleep(Duration::from_millis(150)).await;
        let moved = cache.resolve("docs.ts.net", 443).await.unwrap();
        assert_eq!(moved, vec!["100.64.0.2:443".parse().unwrap()]);
        assert_eq!(count.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_failed_refresh_keeps_the_old_answer_and_a_first_failure_is_an_error() {
        let (cache, answer, _) = scripted();
        let first = cache.resolve("docs.ts.net", 443).await.unwrap();
        answer.lock().unwrap().clear();
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(cache.resolve("docs.ts.net", 443).await.unwrap(), first);
        let err = cache.resolve("other.ts.net", 443).await.unwrap_err();
        assert!(err.to_string().contains("resolving other.ts.net"), "{err}");
    }

    #[tokio::test]
    async fn ip_literals_and_the_system_resolver() {
        let cache = DnsCache::system(Duration::from_secs(30));
        assert_eq!(
            cache.resolve("100.64.0.7", 80).await.unwrap(),
            vec!["100.64.0.7:80".parse().unwrap()]
        );
        assert_eq!(
            cache.resolve("fd7a::1", 80).await.unwrap(),
            vec!["[fd7a::1]:80".parse().unwrap()]
        );
        let local = cache.resolve("localhost", 8080).await.unwrap();
        assert!(
            local
                .iter()
                .all(|a| a.ip().is_loopback() && a.port() == 8080),
            "{local:?}"
        );
    }
}
