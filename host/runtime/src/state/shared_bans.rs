//! The ban list with a shared backend: what `ban-add` / `ban-check` /
//! `ban-remove` and the admin API's `/bans` do when `[state] backend =
//! "redis"`. Bans are made and lifted in Redis (and mirrored in this
//! machine's [`super::bans::BanList`], which decides while Redis is away);
//! in `exact` mode every check asks Redis, in `sync` mode checks are local
//! and the interval task (`backend::sync`) pulls the shared list. Without a
//! backend every call is the local list's.

use super::backend::ban_ops::SharedBan;
use super::bans::{BanEntry, BanOutcome, BanRequest};
use super::SharedState;

impl SharedState {
    /// `ban-add`, through the shared list when it answers.
    pub(crate) async fn ban_add(&self, jail: &str, key: &str, request: &BanRequest) -> BanOutcome {
        let now = self.now_ms();
        if let Some(redis) = &self.redis {
            if let Some(outcome) = Box::pin(redis.ban_add(jail, key, request, now)).await {
                let (BanOutcome::Banned(ban) | BanOutcome::Already(ban)) = &outcome;
                self.bans.mirror(ban.clone(), now);
                return outcome;
            }
        }
        self.bans.add(jail, key, request, now)
    }

    /// `ban-check`: the shared list's answer in `exact` mode, else the
    /// local list's.
    pub(crate) async fn ban_check(&self, jail: &str, key: &str) -> Option<BanEntry> {
        let now = self.now_ms();
        let local = self.bans.check(jail, key, now);
        let Some(redis) = self.exact() else {
            return local;
        };
        match Box::pin(redis.ban_check(jail, key, local.as_ref(), now)).await {
            None | Some(SharedBan::Kept) => local,
            Some(SharedBan::Banned(ban)) => {
                self.bans.mirror(ban.clone(), now);
                Some(ban)
            }
            Some(SharedBan::NotBanned) => None,
            Some(SharedBan::Lifted) => {
                self.bans.remove(jail, key, now);
                None
            }
        }
    }

    /// `ban-remove`: lifted here and in the shared list (which tells the
    /// other machines); true when either had it.
    pub(crate) async fn ban_remove(&self, jail: &str, key: &str) -> bool {
        let now = self.now_ms();
        let local = self.bans.remove(jail, key, now);
        let shared = match &self.redis {
            Some(redis) => Box::pin(redis.ban_remove(jail, key, now))
                .await
                .unwrap_or(false),
            None => false,
        };
        local || shared
    }

    /// Every active ban: the shared list's (merged with this machine's
    /// own), or the local list's while the backend is away.
    pub(crate) async fn ban_list(&self) -> Vec<BanEntry> {
        let now = self.now_ms();
        let mut bans = self.bans.list(now);
        let Some(redis) = &self.redis else {
            return bans;
        };
        if let Some(shared) = Box::pin(redis.ban_list(now)).await {
            for ban in shared.bans {
                if !bans.iter().any(|b| b.jail == ban.jail && b.key == ban.key) {
                    bans.push(ban);
                }
            }
            bans.sort_by(|a, b| (&a.jail, &a.key).cmp(&(&b.jail, &b.key)));
        }
        bans
    }
}
