//! The shared zones of `zones` (nginx `limit_req_zone`): a name, a rate and
//! a key, defined once (usually under `[plugins.rate-limit] config`, which
//! every route's config is laid over) and used by name from `limits`, each
//! use with its own burst. The host keeps one set of buckets per (zone,
//! rate), so every route that uses a zone counts into the same buckets.
//! Validated at configure time.

use std::collections::BTreeMap;

use tailgate_plugin_sdk::key::{KeySource, KeyUse};
use tailgate_plugin_sdk::{validate, ConfigError};

use crate::config::RawZone;
use crate::rate::Rate;

/// A limit's key (nginx `limit_req_zone <key>`, docs/rate-limit.md#keys):
/// `"global"` is one bucket for every request; an empty key means the
/// request is not limited (nginx).
pub const KEYS: KeyUse = KeyUse {
    global_refused: None,
    never: "limit anything",
};
/// Most zones in `zones`: the host keeps at most 64 per plugin.
const MAX_ZONES: usize = 64;

/// A zone's rate and key.
#[derive(Debug, Clone)]
pub struct Zone {
    pub rate: Rate,
    pub key: KeySource,
}

/// The zones of `zones`, by name.
pub type Zones = BTreeMap<String, Zone>;

/// Validate `zones`; errors name the key (`zones.general.rate: ...`).
pub fn build_zones(raw: &BTreeMap<String, RawZone>) -> Result<Zones, ConfigError> {
    if raw.len() > MAX_ZONES {
        return Err(ConfigError::new(
            "zones",
            format!("{} zones; at most {MAX_ZONES}", raw.len()),
        ));
    }
    raw.iter()
        .map(|(name, zone)| {
            let at = |field: &str| format!("zones.{name}.{field}");
            validate::name(&format!("zones.{name}"), name)?;
            let rate = Rate::parse(&zone.rate).map_err(|err| ConfigError::new(at("rate"), err))?;
            let key = KeySource::parse(zone.key.as_deref().unwrap_or("client_ip"), KEYS)
                .map_err(|err| ConfigError::new(at("key"), err))?;
            Ok((name.clone(), Zone { rate, key }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(rate: &str, key: Option<&str>) -> RawZone {
        RawZone {
            rate: rate.to_owned(),
            key: key.map(str::to_owned),
        }
    }

    #[test]
    fn zones_carry_their_rate_and_key() {
        let zones = build_zones(&BTreeMap::from([
            ("general".to_owned(), raw("10r/s", None)),
            ("api".to_owned(), raw("30r/m", Some("header:x-api-key"))),
        ]))
        .expect("valid");
        assert_eq!(zones["general"].rate.milli_per_second(), 10_000);
        assert_eq!(zones["general"].key, KeySource::ClientIp);
        assert_eq!(zones["api"].rate.milli_per_second(), 500);
        assert_eq!(zones["api"].key, KeySource::Header("x-api-key".into()));
    }

    #[test]
    fn zone_mistakes_name_the_key() {
        let refused = |name: &str, zone: RawZone| {
            build_zones(&BTreeMap::from([(name.to_owned(), zone)]))
                .expect_err("refused")
                .to_string()
        };
        assert!(refused("general", raw("10", None))
            .starts_with("zones.general.rate: `10` is not a rate"));
        assert!(refused("general", raw("1r/s", Some("ip")))
            .starts_with("zones.general.key: `ip` is not a key"));
        assert_eq!(
            refused("a zone", raw("1r/s", None)),
            "zones.a zone: `a zone`: use letters, digits, `_`, `-`, `.` and `:`"
        );
        let many: BTreeMap<String, RawZone> = (0..=MAX_ZONES)
            .map(|i| (format!("z{i}"), raw("1r/s", None)))
            .collect();
        assert_eq!(
            build_zones(&many).expect_err("refused").to_string(),
            "zones: 65 zones; at most 64"
        );
    }
}
