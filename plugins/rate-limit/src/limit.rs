//! One validated `limits[i]`: which requests it applies to (path regex,
//! methods), what it counts them by (its key) and what the host's leaky
//! bucket runs: the zone and its rate (from `zones` when the zone is
//! defined there, else the limit's own) and this use's burst and delay.
//! Built at configure time; asked per request by
//! [`crate::policy::RateLimitPolicy`].

use tailgate_plugin_sdk::key::{KeySource, RequestKey};
use tailgate_plugin_sdk::{
    validate, ConfigError, RateLimit, RequestFieldSet, RequestFilter, RequestHead, ZoneUse,
};

use crate::config::RawLimit;
use crate::rate::Rate;
use crate::zone::{Zones, KEYS};
/// Largest burst: nginx's own bound is far higher, but a burst this size at
/// any rate is already a queue, not a limit.
const MAX_BURST: u32 = 1_000_000;

#[derive(Debug, Clone)]
pub struct Limit {
    zone: String,
    /// The host's handle of this zone use (`rate-limit-zone`), given in
    /// `configure` ([`Limit::registered`]).
    zone_use: ZoneUse,
    rate: Rate,
    burst: u32,
    /// Requests within the burst served without delay (`nodelay` = burst).
    delay: u32,
    key: KeySource,
    /// `path` and `methods`.
    filter: RequestFilter,
    status: u16,
    dry_run: bool,
}

/// Settings a limit inherits from the top level unless it sets its own.
#[derive(Debug, Clone, Copy)]
pub struct Inherited {
    pub status: u16,
    pub dry_run: bool,
}

impl Limit {
    pub fn build(
        index: usize,
        raw: &RawLimit,
        inherited: Inherited,
        zones: &Zones,
    ) -> Result<Limit, ConfigError> {
        let at = |field: &str| format!("limits[{index}].{field}");
        validate::name(&at("zone"), &raw.zone)?;
        let (rate, key) = match zones.get(&raw.zone) {
            Some(zone) => {
                for (field, given) in [("rate", raw.rate.is_some()), ("key", raw.key.is_some())] {
                    if given {
                        return Err(ConfigError::new(
                            at(field),
                            format!(
                                "zone `{}` is defined in `zones`, with its {field}: a limit \
                                 using it gives only its burst (nginx `limit_req zone={} burst=`)",
                                raw.zone, raw.zone
                            ),
                        ));
                    }
                }
                (zone.rate, zone.key.clone())
            }
            None => {
                let Some(rate) = &raw.rate else {
                    return Err(ConfigError::new(
                        at("rate"),
                        format!(
                            "required: give the limit a rate, or define zone `{}` in `zones` \
                             (e.g. under [plugins.rate-limit] config, for every route)",
                            raw.zone
                        ),
                    ));
                };
                let rate = Rate::parse(rate).map_err(|err| ConfigError::new(at("rate"), err))?;
                let key = KeySource::parse(raw.key.as_deref().unwrap_or("client_ip"), KEYS)
                    .map_err(|err| ConfigError::new(at("key"), err))?;
                (rate, key)
            }
        };
        if raw.burst > MAX_BURST {
            return Err(ConfigError::new(
                at("burst"),
                format!("{} is above the maximum burst of {MAX_BURST}", raw.burst),
            ));
        }
        let delay = match (raw.nodelay, raw.delay) {
            (true, Some(_)) => {
                return Err(ConfigError::new(
                    at("delay"),
                    "give `nodelay` or `delay`, not both",
                ))
            }
            (true, None) => raw.burst,
            (false, Some(delay)) if delay > raw.burst => {
                return Err(ConfigError::new(
                    at("delay"),
                    format!(
                        "{delay} is above the burst ({}): requests past the burst are rejected, \
                         so write `nodelay = true` to serve the whole burst at once",
                        raw.burst
                    ),
                ))
            }
            (false, delay) => delay.unwrap_or(0),
        };
        let (path_at, methods_at) = (at("path"), at("methods"));
        let filter = RequestFilter::new(
            raw.path.as_deref().map(|path| (path, path_at.as_str())),
            raw.methods
                .as_deref()
                .map(|methods| (methods, methods_at.as_str())),
        )?;
        let status = raw.status.unwrap_or(inherited.status);
        let status_at = if raw.status.is_some() {
            at("status")
        } else {
            "status".to_owned()
        };
        check_status(&status_at, status)?;
        Ok(Limit {
            zone: raw.zone.clone(),
            zone_use: 0,
            rate,
            burst: raw.burst,
            delay,
            key,
            filter,
            status,
            dry_run: raw.dry_run.unwrap_or(inherited.dry_run),
        })
    }

    pub fn zone(&self) -> &str {
        &self.zone
    }

    /// The request headers this limit reads (its key's; the path and
    /// method filters read none).
    pub fn header_names(&self) -> Vec<&str> {
        self.key.header_names()
    }

    /// The request fields this limit reads: its key's, and the path when
    /// `path` is given (the method always comes).
    pub fn request_fields(&self) -> RequestFieldSet {
        self.key.request_fields() | self.filter.request_fields()
    }

    pub fn status(&self) -> u16 {
        self.status
    }

    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// The zone and this use of it, for the host's `rate-limit-check`.
    pub fn spec(&self) -> RateLimit<'_> {
        RateLimit {
            zone: &self.zone,
            rate_milli: self.rate.milli_per_second(),
            burst: self.burst,
            delay: self.delay,
        }
    }

    /// Whether the limit applies to this request: its path regex (if any)
    /// matches and its methods (if listed) include the request's.
    pub fn applies_to(&self, req: &RequestHead) -> bool {
        self.filter.matches(req)
    }

    /// The request's key; `None` when it is empty (not limited). The
    /// client IP stays a number (no text crosses for it).
    pub fn key<'r>(&self, req: &'r RequestHead) -> Option<RequestKey<'r>> {
        self.key.request_key(req)
    }

    /// Whether the limit checks every request by the client's address
    /// (no `path` or `methods` filter, the `client_ip` key): what the
    /// host can check itself before the hook ([`crate::policy`]).
    pub fn checks_every_client(&self) -> bool {
        self.filter.matches_all() && matches!(self.key, KeySource::ClientIp)
    }

    /// The host's handle of this zone use.
    pub fn zone_use(&self) -> ZoneUse {
        self.zone_use
    }

    /// The limit with its zone use registered with the host.
    pub fn registered(self, register: impl FnOnce(RateLimit<'_>) -> ZoneUse) -> Limit {
        let zone_use = register(self.spec());
        Limit { zone_use, ..self }
    }
}

/// nginx `limit_req_status` takes 400-599.
pub fn check_status(at: &str, status: u16) -> Result<(), ConfigError> {
    if (400..=599).contains(&status) {
        Ok(())
    } else {
        Err(ConfigError::new(
            at,
            format!("{status} is not an error status (400-599)"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::tests::request;
    use crate::zone::Zone;

    const INHERITED: Inherited = Inherited {
        status: 429,
        dry_run: false,
    };

    fn raw(rate: &str, burst: u32) -> RawLimit {
        RawLimit {
            zone: "z".to_owned(),
            rate: Some(rate.to_owned()),
            burst,
            nodelay: false,
            delay: None,
            key: None,
            path: None,
            methods: None,
            status: None,
            dry_run: None,
        }
    }

    fn built(raw: &RawLimit) -> Limit {
        Limit::build(0, raw, INHERITED, &Zones::new()).unwrap_or_else(|err| panic!("{err}"))
    }

    fn refused(raw: &RawLimit) -> String {
        Limit::build(2, raw, INHERITED, &Zones::new())
            .expect_err("refused")
            .to_string()
    }

    #[test]
    fn spec_carries_rate_burst_and_delay() {
        let limit = built(&raw("10r/s", 20));
        assert_eq!(
            limit.spec(),
            RateLimit {
                zone: "z",
                rate_milli: 10_000,
                burst: 20,
                delay: 0
            }
        );
        let mut nodelay = raw("30r/m", 5);
        nodelay.nodelay = true;
        assert_eq!(built(&nodelay).spec().delay, 5);
        assert_eq!(built(&nodelay).spec().rate_milli, 500);
        let mut delay = raw("1r/s", 8);
        delay.delay = Some(3);
        assert_eq!(built(&delay).spec().delay, 3);
    }

    #[test]
    fn inherits_status_and_dry_run_unless_set() {
        let limit = built(&raw("1r/s", 0));
        assert_eq!((limit.status(), limit.dry_run()), (429, false));
        let mut own = raw("1r/s", 0);
        own.status = Some(503);
        own.dry_run = Some(true);
        let limit = built(&own);
        assert_eq!((limit.status(), limit.dry_run()), (503, true));
    }

    #[test]
    fn applies_by_path_and_method() {
        let mut login = raw("1r/s", 0);
        login.path = Some("^/user/login$".to_owned());
        login.methods = Some(vec!["post".to_owned()]);
        let limit = built(&login);
        let mut req = request("/user/login", &[]);
        assert!(!limit.applies_to(&req), "GET is not limited");
        req.method = tailgate_plugin_sdk::Method::from_name("POST");
        assert!(limit.applies_to(&req));
        req.path = "/user/login/x".into();
        assert!(!limit.applies_to(&req));
        assert!(
            built(&raw("1r/s", 0)).applies_to(&req),
            "no filters: everything"
        );
    }

    #[test]
    fn errors_name_the_key() {
        let mut r = raw("10", 0);
        assert!(refused(&r).starts_with("limits[2].rate: `10` is not a rate"));
        r = raw("1r/s", 2);
        r.nodelay = true;
        r.delay = Some(1);
        assert_eq!(
            refused(&r),
            "limits[2].delay: give `nodelay` or `delay`, not both"
        );
        r = raw("1r/s", 2);
        r.delay = Some(3);
        assert!(refused(&r).starts_with("limits[2].delay: 3 is above the burst (2)"));
        r = raw("1r/s", 2);
        r.key = Some("ip".to_owned());
        assert!(refused(&r).starts_with("limits[2].key: `ip` is not a key"));
        r = raw("1r/s", 2);
        r.path = Some("(".to_owned());
        assert!(refused(&r).starts_with("limits[2].path: regex parse error"));
        r = raw("1r/s", 2);
        r.methods = Some(vec![]);
        assert!(refused(&r).starts_with("limits[2].methods: must not be empty"));
        r.methods = Some(vec!["GET".to_owned(), "PO ST".to_owned()]);
        assert_eq!(
            refused(&r),
            "limits[2].methods[1]: `PO ST` is not a valid HTTP method"
        );
        r = raw("1r/s", 2);
        r.status = Some(200);
        assert_eq!(
            refused(&r),
            "limits[2].status: 200 is not an error status (400-599)"
        );
        r = raw("1r/s", 2);
        r.zone = String::new();
        assert_eq!(refused(&r), "limits[2].zone: must not be empty");
        r.zone = "a zone".to_owned();
        assert_eq!(
            refused(&r),
            "limits[2].zone: `a zone`: use letters, digits, `_`, `-`, `.` and `:`"
        );
        r = raw("1r/s", MAX_BURST + 1);
        assert!(refused(&r).starts_with("limits[2].burst: 1000001 is above"));
        r = raw("1r/s", 0);
        r.rate = None;
        assert_eq!(
            refused(&r),
            "limits[2].rate: required: give the limit a rate, or define zone `z` in `zones` \
             (e.g. under [plugins.rate-limit] config, for every route)"
        );
    }

    fn general() -> Zones {
        Zones::from([(
            "general".to_owned(),
            Zone {
                rate: Rate::parse("10r/s").expect("rate"),
                key: KeySource::parse("header:x-api-key", KEYS).expect("key"),
            },
        )])
    }

    #[test]
    fn a_limit_on_a_shared_zone_takes_its_rate_and_key_and_gives_its_burst() {
        let mut use_of = raw("1r/s", 50);
        use_of.zone = "general".to_owned();
        use_of.rate = None;
        use_of.nodelay = true;
        let limit = Limit::build(0, &use_of, INHERITED, &general()).expect("valid");
        assert_eq!(
            limit.spec(),
            RateLimit {
                zone: "general",
                rate_milli: 10_000,
                burst: 50,
                delay: 50
            }
        );
        assert_eq!(limit.header_names(), ["x-api-key"]);
        // The zone's rate and key are the zone's: a use cannot change them.
        for (field, set) in [
            (
                "rate",
                (|r: &mut RawLimit| r.rate = Some("5r/s".to_owned())) as fn(&mut RawLimit),
            ),
            ("key", |r: &mut RawLimit| r.key = Some("global".to_owned())),
        ] {
            let mut own = raw("1r/s", 0);
            own.zone = "general".to_owned();
            own.rate = None;
            set(&mut own);
            let err = Limit::build(1, &own, INHERITED, &general())
                .expect_err("refused")
                .to_string();
            assert_eq!(
                err,
                format!(
                    "limits[1].{field}: zone `general` is defined in `zones`, with its {field}: \
                     a limit using it gives only its burst (nginx `limit_req zone=general burst=`)"
                )
            );
        }
    }
}
