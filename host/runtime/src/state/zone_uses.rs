//! The rate-limit zone uses one plugin instance registered with
//! `rate-limit-zone` (in `configure`): the handles `rate-limit-check`
//! takes per request, so no zone name crosses or is hashed per call. Each
//! use keeps its zone spec and burst, and the zone it resolved to in the
//! instance's state namespace, looked up again when the namespace changes
//! (`plugin-info.state-scope`) or the plugin's registry dropped the zone.

use std::sync::Arc;

use super::rate_limiter::{Burst, RateLimitError, RateLimitZone, RateLimitZones, ZoneSpec};

/// Most zone uses one instance may register (a route has at most 16 limits).
pub(crate) const MAX_ZONE_USES: usize = 64;

/// Why a zone use could not be registered or resolved (the guest traps).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ZoneUseError {
    #[error("rate-limit-zone: more than {MAX_ZONE_USES} zone uses on one instance")]
    TooMany,
    #[error("rate-limit-check: zone use {0} was not given by rate-limit-zone")]
    Unknown(u32),
    #[error(transparent)]
    Zone(#[from] RateLimitError),
}

struct ZoneUse {
    spec: ZoneSpec,
    by: Burst,
    zone: Option<Arc<RateLimitZone>>,
}

/// One instance's registered zone uses, by handle.
#[derive(Default)]
pub(crate) struct ZoneUses(Vec<ZoneUse>);

impl ZoneUses {
    /// Registers a use and returns its handle.
    pub(crate) fn register(&mut self, spec: ZoneSpec, by: Burst) -> Result<u32, ZoneUseError> {
        if spec.rate_milli == 0 {
            return Err(RateLimitError::ZeroRate { zone: spec.name }.into());
        }
        if self.0.len() >= MAX_ZONE_USES {
            return Err(ZoneUseError::TooMany);
        }
        self.0.push(ZoneUse {
            spec,
            by,
            zone: None,
        });
        Ok((self.0.len() - 1) as u32)
    }

    /// The zone and burst of `handle`, the zone looked up in `zones` on
    /// first use (and after it was dropped or the namespace changed).
    pub(crate) fn resolve(
        &mut self,
        handle: u32,
        zones: &RateLimitZones,
    ) -> Result<(Arc<RateLimitZone>, Burst), ZoneUseError> {
        let zone_use = self
            .0
            .get_mut(handle as usize)
            .ok_or(ZoneUseError::Unknown(handle))?;
        match &zone_use.zone {
            Some(zone) if !zone.is_dropped() => Ok((zone.clone(), zone_use.by)),
            _ => {
                let zone = zones.zone(zone_use.spec.clone())?;
                zone_use.zone = Some(zone.clone());
                Ok((zone, zone_use.by))
            }
        }
    }

    /// How many uses are registered (handles are `0..len`).
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// Forgets the resolved zones (the instance's namespace changed).
    pub(crate) fn forget_zones(&mut self) {
        for zone_use in &mut self.0 {
            zone_use.zone = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, rate_milli: u64) -> ZoneSpec {
        ZoneSpec {
            name: name.into(),
            rate_milli,
        }
    }

    const BY: Burst = Burst { burst: 5, delay: 0 };

    #[test]
    fn a_handle_resolves_to_its_zone_and_a_dropped_zone_is_looked_up_again() {
        let zones = RateLimitZones::new("p".into(), 1, 100);
        let mut uses = ZoneUses::default();
        let a = uses.register(spec("a", 1000), BY).expect("a");
        let b = uses.register(spec("b", 1000), BY).expect("b");
        let (zone_a, by) = uses.resolve(a, &zones).expect("resolve a");
        assert_eq!((zone_a.name(), by), ("a", BY));
        // One zone at most: b's lookup drops a from the registry.
        let (zone_b, _) = uses.resolve(b, &zones).expect("resolve b");
        assert_eq!(zone_b.name(), "b");
        assert!(zone_a.is_dropped());
        let (again, _) = uses.resolve(a, &zones).expect("resolve a again");
        assert!(
            !Arc::ptr_eq(&again, &zone_a),
            "a fresh zone, not the dropped one"
        );
    }

    #[test]
    fn unknown_handles_zero_rates_and_too_many_uses_are_refused() {
        let zones = RateLimitZones::new("p".into(), 8, 100);
        let mut uses = ZoneUses::default();
        assert!(matches!(
            uses.resolve(0, &zones),
            Err(ZoneUseError::Unknown(0))
        ));
        assert!(matches!(
            uses.register(spec("z", 0), BY),
            Err(ZoneUseError::Zone(_))
        ));
        for n in 0..MAX_ZONE_USES {
            uses.register(spec(&format!("z{n}"), 1000), BY)
                .expect("room");
        }
        assert!(matches!(
            uses.register(spec("over", 1000), BY),
            Err(ZoneUseError::TooMany)
        ));
    }
}
