//! Validation: raw config types into runtime types, collecting every error with its place.

use super::error::{ConfigError, ConfigErrors, SourceFile};
use super::raw::*;
use crate::error_pages::{ErrorPages, STATUSES};
use crate::routing::{normalize_host, HostIndex, Route};
use crate::snapshot::*;
use crate::upstream::{Backend, HealthCheck, HealthRegistry, LbPolicy, Passive, Pool, UpstreamTls};
use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use toml::Spanned;

/// Loads and compiles everything; see [`super::load`].
pub fn load_all(
    path: &Path,
    health: &HealthRegistry,
    generation: u64,
) -> Result<Snapshot, ConfigErrors> {
    let mut errors = ConfigErrors::default();
    let file = SourceFile::read(path).map_err(|e| ConfigErrors(vec![e]))?;
    let raw: RawGlobal = file.parse().map_err(|e| ConfigErrors(vec![e]))?;
    let global = compile_global(&file, &raw, &mut errors);
    let rulesets_dir = file.resolve(
        raw.rulesets_dir
            .as_ref()
            .map(|s| s.get_ref().as_str())
            .unwrap_or("../rulesets"),
    );
    let mut early_warnings = Vec::new();
    let waf_loaded = if raw.rulesets_dir.is_none() && !rulesets_dir.exists() {
        early_warnings.push(format!(
            "{}: no rulesets directory at {} (set rulesets_dir): the WAF has no rules",
            file.path.display(),
            rulesets_dir.display()
        ));
        crate::waf::Engine::from_files(&[])
    } else {
        crate::waf::Engine::load_dir(&rulesets_dir)
    };
    let waf_engine = match waf_loaded {
        Ok(e) => Some(Arc::new(e)),
        Err(errs) => {
            for e in errs {
                errors.push(ConfigError {
                    file: e.file.clone().unwrap_or_else(|| rulesets_dir.clone()),
                    line: e.line,
                    col: e.col,
                    message: match e.rule_id {
                        Some(id) => format!("rule {id}: {}", e.message),
                        None => e.message.clone(),
                    },
                });
            }
            None
        }
    };
    let mut waf_engines = waf_engine.clone().map(super::waf::WafEngines::new);
    let global_limits = merge_limits(&Limits::default(), &raw.limits);
    let global_timeouts = merge_timeouts(&UpstreamTimeouts::default(), &raw.upstream);

    let mut site_files: Vec<PathBuf> = match std::fs::read_dir(&global.sites_dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
            .collect(),
        Err(e) => {
            let span = raw.sites_dir.as_ref().map(|s| s.span()).unwrap_or(0..0);
            errors.push(file.error(
                span,
                format!(
                    "cannot read sites directory {}: {e}",
                    global.sites_dir.display()
                ),
            ));
            Vec::new()
        }
    };
    site_files.sort();

    let mut sites: Vec<Arc<Site>> = Vec::new();
    let mut hosts = HostIndex::default();
    // host pattern -> (file, line) of its first claim, to name both files on a duplicate.
    let mut host_owner: HashMap<String, (PathBuf, usize)> = HashMap::new();
    let mut names: HashMap<String, PathBuf> = HashMap::new();
    let mut certs = crate::tls::CertStore::default();
    let mut cert_infos = Vec::new();
    let mut warnings = early_warnings;
    let mut first_cert = None;
    let acme_global = raw.acme.as_ref().map(|a| AcmeSettings {
        directory: a.directory.get_ref().clone(),
        contact: a.contact.clone(),
        state_dir: file.resolve(a.state_dir.get_ref()),
        ca_file: a.ca_file.as_ref().map(|c| file.resolve(c.get_ref())),
        renew_before: a
            .renew_before
            .map(|d| d.0)
            .unwrap_or(Duration::from_secs(30 * 86_400)),
        check_interval: a
            .check_interval
            .map(|d| d.0)
            .unwrap_or(Duration::from_secs(3600)),
        sites: Vec::new(),
    });
    let mut acme_sites = Vec::new();
    // (site name, its rate-limit table, its file) for the policy compiler.
    let mut site_limits: Vec<(String, crate::ratelimit::SiteRateLimitConfig, PathBuf)> = Vec::new();
    let mut site_deface: Vec<(
        String,
        Vec<String>,
        crate::deface::SiteDefaceConfig,
        PathBuf,
    )> = Vec::new();
    let now = SystemTime::now();

    for sf_path in &site_files {
        let sf = match SourceFile::read(sf_path) {
            Ok(f) => f,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let raw_site: RawSite = match sf.parse() {
            Ok(r) => r,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let mut site = compile_site(
            &sf,
            &raw_site,
            &global,
            &global_limits,
            &global_timeouts,
            health,
            &mut errors,
        );
        if let Some(prev) = names.get(site.name.as_str()) {
            errors.push(sf.error(
                raw_site.name.span(),
                format!(
                    "site name {:?} is already used by {}",
                    site.name,
                    prev.display()
                ),
            ));
        } else {
            names.insert(site.name.clone(), sf.path.clone());
        }
        let index = sites.len();
        for h in raw_site.hosts.get_ref() {
            let Some(pattern) = normalize_pattern(h.get_ref()) else {
                continue;
            };
            let (line, _) = sf.line_col(h.span().start);
            if let Some((other, other_line)) = host_owner.get(&pattern) {
                errors.push(sf.error(
                    h.span(),
                    format!(
                        "host {pattern:?} is already served by {}:{other_line}",
                        other.display()
                    ),
                ));
                continue;
            }
            host_owner.insert(pattern.clone(), (sf.path.clone(), line));
            hosts.insert(&pattern, index);
        }
        if let Some(engines) = &mut waf_engines {
            let cfg = raw_site.waf.clone().unwrap_or_default();
            if let Some(w) = engines.site(&sf, &cfg, &mut errors) {
                site.waf = Arc::new(w.policy);
                site.waf_engine = w.engine;
            }
        }
        if let Some(d) = &raw_site.deface {
            site_deface.push((
                site.name.clone(),
                site.hosts.clone(),
                d.clone(),
                sf.path.clone(),
            ));
        }
        if let Some(rl) = &raw_site.ratelimit {
            site_limits.push((site.name.clone(), rl.clone(), sf.path.clone()));
        }
        if let Some(t) = &raw_site.tls {
            let acme_on = t.acme.as_ref().is_some_and(|a| *a.get_ref());
            let tls_span = t
                .acme
                .as_ref()
                .map(|a| a.span())
                .or_else(|| t.cert.as_ref().map(|c| c.span()))
                .or_else(|| t.key.as_ref().map(|k| k.span()))
                .unwrap_or(0..0);
            let files = match (&t.cert, &t.key, acme_on, &acme_global) {
                (Some(c), Some(k), false, _) => Some((
                    resolve_in(&global.certs_dir, c.get_ref()),
                    resolve_in(&global.certs_dir, k.get_ref()),
                    c.span(),
                )),
                (None, None, true, Some(a)) => {
                    let exact: Vec<String> = site
                        .hosts
                        .iter()
                        .filter(|h| !h.starts_with("*."))
                        .cloned()
                        .collect();
                    if exact.len() != site.hosts.len() {
                        errors.push(sf.error(tls_span.clone(), "ACME HTTP-01 cannot issue wildcard names: list exact hosts or give cert/key"));
                    }
                    acme_sites.push((site.name.clone(), exact));
                    let (c, k) = (a.cert_path(&site.name), a.key_path(&site.name));
                    if c.exists() && k.exists() {
                        Some((c, k, tls_span.clone()))
                    } else {
                        warnings.push(format!(
                            "{}: waiting for the ACME certificate of site {}",
                            sf.path.display(),
                            site.name
                        ));
                        None
                    }
                }
                (None, None, true, None) => {
                    errors.push(sf.error(
                        tls_span.clone(),
                        "acme = true needs an [acme] table in the global file",
                    ));
                    None
                }
                (_, _, true, _) => {
                    errors.push(sf.error(
                        tls_span.clone(),
                        "give either acme = true or cert and key, not both",
                    ));
                    None
                }
                _ => {
                    errors.push(sf.error(
                        tls_span.clone(),
                        "[tls] needs cert and key (or acme = true)",
                    ));
                    None
                }
            };
            if let Some((cert, key, span)) = files {
                let ocsp = t
                    .ocsp
                    .as_ref()
                    .map(|o| resolve_in(&global.certs_dir, o.get_ref()));
                match crate::tls::certs::load(
                    &site.name,
                    &cert,
                    &key,
                    ocsp.as_deref(),
                    &site.hosts,
                    now,
                ) {
                    Ok(loaded) => {
                        for h in &site.hosts {
                            match h.strip_prefix("*.") {
                                Some(suffix) => certs
                                    .wildcard
                                    .insert(suffix.to_string(), loaded.key.clone()),
                                None => certs.exact.insert(h.clone(), loaded.key.clone()),
                            };
                        }
                        warnings.extend(
                            loaded
                                .warnings
                                .iter()
                                .map(|w| format!("{}: {w}", sf.path.display())),
                        );
                        first_cert.get_or_insert_with(|| loaded.key.clone());
                        cert_infos.push(loaded.info);
                    }
                    Err(msg) => errors.push(sf.error(span, msg)),
                }
            }
        }
        sites.push(Arc::new(site));
    }

    if site_files.is_empty() && errors.is_empty() {
        errors.push(file.error(
            raw.sites_dir.as_ref().map(|s| s.span()).unwrap_or(0..0),
            format!("no site files (*.toml) in {}", global.sites_dir.display()),
        ));
    }

    if !global.tls.refuse_unknown_sni {
        match (&raw.tls.default_cert, &raw.tls.default_key) {
            (Some(c), Some(k)) => {
                let (cp, kp) = (
                    resolve_in(&global.certs_dir, c.get_ref()),
                    resolve_in(&global.certs_dir, k.get_ref()),
                );
                match crate::tls::certs::load("_default", &cp, &kp, None, &[], now) {
                    Ok(loaded) => certs.default = Some(loaded.key),
                    Err(msg) => errors.push(file.error(c.span(), msg)),
                }
            }
            (Some(c), None) | (None, Some(c)) => {
                errors.push(file.error(c.span(), "[tls] default_cert and default_key go together"))
            }
            (None, None) => certs.default = first_cert,
        }
    }
    if !global.https_listen.is_empty()
        && cert_infos.is_empty()
        && acme_sites.is_empty()
        && errors.is_empty()
    {
        errors.push(file.error(
            0..0,
            "[listen] https is set but no site has a [tls] certificate",
        ));
    }

    let ratelimit = match crate::ratelimit::Policies::compile(
        &raw.ratelimit,
        site_limits
            .iter()
            .map(|(name, cfg, _)| (name.as_str(), cfg)),
    ) {
        Ok(p) => Some(p),
        Err(e) => {
            // Point at the [ratelimit] table of the file the error belongs to.
            let path = e
                .site
                .as_ref()
                .and_then(|s| site_limits.iter().find(|(n, _, _)| n == s))
                .map(|(_, _, p)| p.clone());
            let err = match path.and_then(|p| SourceFile::read(&p).ok()) {
                Some(sf) => table_error(&sf, "ratelimit", e.to_string()),
                None => table_error(&file, "ratelimit", e.to_string()),
            };
            errors.push(err);
            None
        }
    };

    let (deface, deface_settings) = compile_deface(&file, &raw, &site_deface, &mut errors);

    let (Some(ratelimit), Some(deface), Some(waf)) =
        (ratelimit.filter(|_| errors.is_empty()), deface, waf_engine)
    else {
        return Err(errors);
    };
    Ok(Snapshot {
        generation,
        loaded_at: SystemTime::now(),
        config_path: path.to_path_buf(),
        global,
        sites,
        hosts,
        certs: Arc::new(certs),
        cert_infos,
        warnings,
        ratelimit: Arc::new(ratelimit),
        deface: Arc::new(deface),
        waf,
        rulesets_dir,
        crs_dirs: waf_engines.map(|e| e.watched_dirs()).unwrap_or_default(),
        acme: acme_global.map(|mut a| {
            a.sites = acme_sites;
            a
        }),
        deface_settings,
    })
}

/// The defacement policy and its settings; errors point at the `[deface]` table concerned.
fn compile_deface(
    file: &SourceFile,
    raw: &RawGlobal,
    sites: &[(
        String,
        Vec<String>,
        crate::deface::SiteDefaceConfig,
        PathBuf,
    )],
    errors: &mut ConfigErrors,
) -> (Option<crate::deface::DefacePolicy>, DefaceSettings) {
    let g = &raw.deface;
    let resolve = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            file.resolve(&p.to_string_lossy())
        }
    };
    let state_dir = g.state_dir.as_deref().map(resolve);
    let probe_interval = match &g.probe_interval {
        None => Duration::from_secs(60),
        Some(s) => match humantime::parse_duration(s) {
            Ok(d) if d >= Duration::from_secs(1) => d,
            _ => {
                errors.push(table_error(
                    file,
                    "deface",
                    format!("deface.probe_interval {s:?}: expected a duration of at least 1s"),
                ));
                Duration::from_secs(60)
            }
        },
    };
    let settings = DefaceSettings {
        event_log: g
            .event_log
            .as_deref()
            .map(resolve)
            .or_else(|| state_dir.as_ref().map(|d| d.join("events.jsonl"))),
        webhook_url: g.webhook_url.clone(),
        probe_interval,
        probe_concurrency: g.probe_concurrency.clamp(1, 64),
        state_dir,
    };
    let protects = sites.iter().any(|(_, _, d, _)| !d.pages.is_empty());
    if protects && settings.state_dir.is_none() {
        errors.push(table_error(
            file,
            "deface",
            "sites protect pages: set [deface] state_dir for the baselines".to_string(),
        ));
    }
    let keywords = match &g.keywords_file {
        None => crate::deface::Keywords::builtin(),
        Some(p) => crate::deface::Keywords::builtin_and_file(&resolve(p)),
    };
    let keywords = match keywords {
        Ok(k) => Arc::new(k),
        Err(e) => {
            errors.push(table_error(file, "deface", format!("deface keywords: {e}")));
            return (None, settings);
        }
    };
    let policy = crate::deface::DefacePolicy::compile(
        g,
        keywords,
        sites
            .iter()
            .map(|(n, h, d, _)| (n.as_str(), h.as_slice(), d)),
    );
    match policy {
        Ok(p) => (Some(p), settings),
        Err(e) => {
            let msg = e.to_string();
            let site_file = e
                .site
                .as_ref()
                .and_then(|s| sites.iter().find(|(n, _, _, _)| n == s))
                .map(|s| s.3.clone());
            let err = match site_file.and_then(|p| SourceFile::read(&p).ok()) {
                Some(sf) => table_error(&sf, "deface", msg),
                None => table_error(file, "deface", msg),
            };
            errors.push(err);
            (None, settings)
        }
    }
}

/// An error at the line that opens `[table]` (or `[table.` / `[[table.`) in `sf`, else line 1.
pub(super) fn table_error(sf: &SourceFile, table: &str, message: String) -> ConfigError {
    let needles = [
        format!("[{table}]"),
        format!("[{table}."),
        format!("[[{table}."),
    ];
    let offset = needles
        .iter()
        .filter_map(|n| sf.text.find(n.as_str()))
        .min()
        .unwrap_or(0);
    sf.error(offset..offset, message)
}

/// `p` relative to `dir` unless absolute.
pub(super) fn resolve_in(dir: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    }
}

fn normalize_pattern(h: &str) -> Option<String> {
    match h.strip_prefix("*.") {
        Some(rest) => normalize_host(rest).map(|r| format!("*.{r}")),
        None => normalize_host(h),
    }
}

fn parse_addr(
    file: &SourceFile,
    s: &Spanned<String>,
    what: &str,
    errors: &mut ConfigErrors,
) -> Option<SocketAddr> {
    match s.get_ref().parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            errors.push(file.error(
                s.span(),
                format!(
                    "invalid {what} {:?}: expected IP:port such as \"127.0.0.1:8080\"",
                    s.get_ref()
                ),
            ));
            None
        }
    }
}

fn compile_global(file: &SourceFile, raw: &RawGlobal, errors: &mut ConfigErrors) -> Global {
    let http_listen = raw
        .listen
        .http
        .iter()
        .filter_map(|s| parse_addr(file, s, "listen address", errors))
        .collect();
    let https_listen = raw
        .listen
        .https
        .iter()
        .filter_map(|s| parse_addr(file, s, "listen address", errors))
        .collect();
    let tls = GlobalTls {
        tls13_only: match &raw.tls.min_version {
            None => false,
            Some(v) if v.get_ref() == "1.2" => false,
            Some(v) if v.get_ref() == "1.3" => true,
            Some(v) => {
                errors.push(file.error(v.span(), format!("invalid min_version {:?}: expected \"1.2\" or \"1.3\" (older versions are never offered)", v.get_ref())));
                false
            }
        },
        refuse_unknown_sni: match &raw.tls.unknown_sni {
            None => false,
            Some(v) if v.get_ref() == "default" => false,
            Some(v) if v.get_ref() == "refuse" => true,
            Some(v) => {
                errors.push(file.error(
                    v.span(),
                    format!(
                        "invalid unknown_sni {:?}: expected \"default\" or \"refuse\"",
                        v.get_ref()
                    ),
                ));
                false
            }
        },
    };
    let certs_dir = file.resolve(
        raw.certs_dir
            .as_ref()
            .map(|s| s.get_ref().as_str())
            .unwrap_or("../certs"),
    );
    let admin_listen = raw
        .admin
        .listen
        .as_ref()
        .and_then(|s| parse_addr(file, s, "admin listen address", errors));
    // One socket per address: the same address on two listeners would fail at bind time.
    let mut seen: Vec<SocketAddr> = Vec::new();
    for s in raw
        .listen
        .http
        .iter()
        .chain(raw.listen.https.iter())
        .chain(raw.admin.listen.iter())
    {
        if let Ok(a) = s.get_ref().parse::<SocketAddr>() {
            if seen.contains(&a) {
                errors.push(file.error(
                    s.span(),
                    format!("listen address {a} is given twice: each listener needs its own"),
                ));
            } else {
                seen.push(a);
            }
        }
    }
    let admin = AdminSettings {
        token: raw.admin.token_file.as_ref().and_then(|t| {
            match read_token(&file.resolve(t.get_ref())) {
                Ok(tok) => Some(Arc::from(tok)),
                Err(msg) => {
                    errors.push(file.error(t.span(), msg));
                    None
                }
            }
        }),
        metrics_public: raw.admin.metrics_public.unwrap_or(true),
    };
    if let (Some(a), None, Some(l)) = (admin_listen, &raw.admin.token_file, &raw.admin.listen) {
        if !a.ip().is_loopback() {
            errors.push(file.error(
                l.span(),
                format!("admin listener {a} is not on loopback: set [admin] token_file"),
            ));
        }
    }
    let access_log = match raw.log.access_log.as_deref() {
        None | Some("stdout") => AccessLogTarget::Stdout,
        Some("off") => AccessLogTarget::Off,
        Some(p) => AccessLogTarget::File(file.resolve(p)),
    };
    let audit_log = match raw.log.audit_log.as_deref() {
        None | Some("off") => AccessLogTarget::Off,
        Some("stdout") => AccessLogTarget::Stdout,
        Some(p) => AccessLogTarget::File(file.resolve(p)),
    };
    let log_level = match &raw.log.level {
        None => log::LevelFilter::Info,
        Some(l) => match l.get_ref().parse::<log::LevelFilter>() {
            Ok(v) => v,
            Err(_) => {
                errors.push(file.error(
                    l.span(),
                    format!(
                        "invalid log level {:?}: expected error, warn, info, debug or trace",
                        l.get_ref()
                    ),
                ));
                log::LevelFilter::Info
            }
        },
    };
    let mut trusted_proxies = Vec::new();
    for t in &raw.trusted_proxies {
        let s = t.get_ref().trim();
        let parsed = s
            .parse::<ipnet::IpNet>()
            .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
        match parsed {
            Ok(n) => trusted_proxies.push(n),
            Err(_) => errors.push(file.error(
                t.span(),
                format!(
                    "invalid trusted proxy {s:?}: expected an IP or CIDR such as \"10.0.0.0/8\""
                ),
            )),
        }
    }
    let server = ServerSettings {
        threads: raw.server.threads.unwrap_or(2).clamp(1, 256),
        grace_period: raw
            .server
            .grace_period
            .map(|d| d.0)
            .unwrap_or(Duration::from_secs(5)),
        shutdown_timeout: raw
            .server
            .shutdown_timeout
            .map(|d| d.0)
            .unwrap_or(Duration::from_secs(5)),
        work_stealing: raw.server.work_stealing.unwrap_or(true),
    };
    let unknown_host = UnknownHost {
        status: match &raw.unknown_host.status {
            None => 404,
            Some(s) if (400..600).contains(s.get_ref()) => *s.get_ref(),
            Some(s) => {
                errors.push(file.error(
                    s.span(),
                    format!(
                        "invalid status {} for unknown hosts: expected 400-599",
                        s.get_ref()
                    ),
                ));
                404
            }
        },
        page: raw
            .unknown_host
            .page
            .as_ref()
            .and_then(|p| read_page(file, p, errors)),
    };
    let error_pages = compile_error_pages(file, &raw.error_pages, errors);
    let sites_dir = file.resolve(
        raw.sites_dir
            .as_ref()
            .map(|s| s.get_ref().as_str())
            .unwrap_or("sites"),
    );
    Global {
        audit_log,
        http_listen,
        https_listen,
        tls,
        certs_dir,
        admin_listen,
        admin,
        access_log,
        log_level,
        trusted_proxies,
        server,
        unknown_host,
        error_pages,
        reload: ReloadSettings {
            watch: raw.reload.watch.unwrap_or(true),
            debounce: raw
                .reload
                .debounce
                .map(|d| d.0)
                .unwrap_or(Duration::from_millis(300)),
        },
        sites_dir,
        client_header_timeout: raw
            .server
            .client_header_timeout
            .map(|d| d.0)
            .unwrap_or(Duration::from_secs(10)),
        client_header_deadline: raw
            .server
            .client_header_deadline
            .map(|d| d.0)
            .unwrap_or(Duration::from_secs(30)),
        connections: ConnectionLimits {
            max_per_ip: raw.connections.max_per_ip.unwrap_or(256),
            new_per_second_per_ip: raw.connections.new_per_second_per_ip.unwrap_or(0),
            exempt: raw
                .connections
                .exempt
                .iter()
                .filter_map(|c| {
                    let t = c.get_ref().trim();
                    match t
                        .parse::<ipnet::IpNet>()
                        .or_else(|_| t.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    {
                        Ok(n) => Some(n),
                        Err(_) => {
                            errors.push(file.error(
                                c.span(),
                                format!("invalid CIDR {t:?} in [connections] exempt"),
                            ));
                            None
                        }
                    }
                })
                .collect(),
        },
    }
}

/// Reads an admin token file, refusing one that others can read.
fn read_token(path: &Path) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("cannot read token file {}: {e}", path.display()))?;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(format!(
            "token file {} is readable by others (mode {:o}): chmod 600 it",
            path.display(),
            mode & 0o777
        ));
    }
    let tok = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read token file {}: {e}", path.display()))?;
    let tok = tok.trim().to_string();
    if tok.len() < 16 {
        return Err(format!(
            "token in {} is shorter than 16 characters",
            path.display()
        ));
    }
    Ok(tok)
}

/// Largest error page file accepted.
const MAX_PAGE_BYTES: u64 = 256 * 1024;

fn read_page(
    file: &SourceFile,
    p: &Spanned<String>,
    errors: &mut ConfigErrors,
) -> Option<Arc<str>> {
    let path = file.resolve(p.get_ref());
    match std::fs::metadata(&path) {
        Ok(m) if m.len() > MAX_PAGE_BYTES => {
            errors.push(file.error(
                p.span(),
                format!(
                    "page {} is {} bytes, over the {MAX_PAGE_BYTES} byte limit",
                    path.display(),
                    m.len()
                ),
            ));
            return None;
        }
        _ => {}
    }
    match std::fs::read_to_string(&path) {
        Ok(s) => Some(Arc::from(s)),
        Err(e) => {
            errors.push(file.error(
                p.span(),
                format!("cannot read page {}: {e}", path.display()),
            ));
            None
        }
    }
}

fn compile_error_pages(
    file: &SourceFile,
    raw: &BTreeMap<String, Spanned<String>>,
    errors: &mut ConfigErrors,
) -> ErrorPages {
    let mut custom = HashMap::new();
    for (k, v) in raw {
        match k.parse::<u16>() {
            Ok(code) if STATUSES.contains(&code) => {
                if let Some(page) = read_page(file, v, errors) {
                    custom.insert(code, page);
                }
            }
            _ => errors.push(file.error(
                v.span(),
                format!("error page key {k:?} is not one of the statuses {STATUSES:?}"),
            )),
        }
    }
    ErrorPages::new(custom)
}

fn merge_limits(base: &Limits, raw: &RawLimits) -> Limits {
    Limits {
        max_header_bytes: raw
            .max_header_bytes
            .map(|b| b.0 as usize)
            .unwrap_or(base.max_header_bytes),
        max_headers: raw.max_headers.unwrap_or(base.max_headers),
        max_uri_bytes: raw
            .max_uri_bytes
            .map(|b| b.0 as usize)
            .unwrap_or(base.max_uri_bytes),
        max_body_bytes: raw
            .max_body_bytes
            .map(|b| b.0)
            .unwrap_or(base.max_body_bytes),
        min_body_rate: raw.min_body_rate.unwrap_or(base.min_body_rate),
        body_rate_grace: raw
            .body_rate_grace
            .map(|d| d.0)
            .unwrap_or(base.body_rate_grace),
        client_body_timeout: raw
            .client_body_timeout
            .map(|d| d.0)
            .unwrap_or(base.client_body_timeout),
        client_send_timeout: raw
            .client_send_timeout
            .map(|d| d.0)
            .unwrap_or(base.client_send_timeout),
    }
}

fn merge_timeouts(base: &UpstreamTimeouts, raw: &RawUpstreamDefaults) -> UpstreamTimeouts {
    UpstreamTimeouts {
        connect: raw.connect_timeout.map(|d| d.0).unwrap_or(base.connect),
        read: raw.read_timeout.map(|d| d.0).unwrap_or(base.read),
        write: raw.write_timeout.map(|d| d.0).unwrap_or(base.write),
        total: raw.total_timeout.map(|d| d.0).unwrap_or(base.total),
        retries: raw.retries.unwrap_or(base.retries),
    }
}

fn compile_site(
    sf: &SourceFile,
    raw: &RawSite,
    global: &Global,
    global_limits: &Limits,
    global_timeouts: &UpstreamTimeouts,
    health: &HealthRegistry,
    errors: &mut ConfigErrors,
) -> Site {
    let name = raw.name.get_ref().trim().to_string();
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        errors.push(sf.error(
            raw.name.span(),
            format!("invalid site name {name:?}: use letters, digits, '-', '_' and '.'"),
        ));
    }
    let mut hosts = Vec::new();
    if raw.hosts.get_ref().is_empty() {
        errors.push(sf.error(raw.hosts.span(), "a site needs at least one host name"));
    }
    for h in raw.hosts.get_ref() {
        match normalize_pattern(h.get_ref()) {
            Some(p) if !p[2..].is_empty() || !p.starts_with("*.") => hosts.push(p),
            _ => errors.push(sf.error(h.span(), format!("invalid host name {:?}: expected e.g. \"www.example.gov.cn\" or \"*.example.gov.cn\"", h.get_ref()))),
        }
    }

    let mut pools = Vec::new();
    let mut pool_index: HashMap<&str, usize> = HashMap::new();
    if raw.pools.is_empty() {
        errors.push(sf.error(
            raw.name.span(),
            "a site needs at least one pool ([pools.NAME] with backends)",
        ));
    }
    for (pname, rp) in &raw.pools {
        pool_index.insert(pname.as_str(), pools.len());
        pools.push(Arc::new(compile_pool(sf, &name, pname, rp, health, errors)));
    }

    let lookup_pool = |s: &Spanned<String>, errors: &mut ConfigErrors| -> usize {
        match pool_index.get(s.get_ref().as_str()) {
            Some(&i) => i,
            None => {
                let known: Vec<&str> = pool_index.keys().copied().collect();
                errors.push(sf.error(
                    s.span(),
                    format!(
                        "unknown pool {:?}; this site defines {known:?}",
                        s.get_ref()
                    ),
                ));
                0
            }
        }
    };
    let default_pool = match &raw.default_pool {
        Some(p) => lookup_pool(p, errors),
        None if pools.len() <= 1 => 0,
        None => {
            errors.push(sf.error(
                raw.name.span(),
                "a site with several pools needs default_pool = \"NAME\"",
            ));
            0
        }
    };
    let mut routes = Vec::new();
    for r in &raw.routes {
        let prefix = r.prefix.get_ref();
        if !prefix.starts_with('/') {
            errors.push(sf.error(
                r.prefix.span(),
                format!("route prefix {prefix:?} must start with '/'"),
            ));
        }
        routes.push(Route {
            prefix: prefix.clone(),
            pool: lookup_pool(&r.pool, errors),
        });
    }
    routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));

    let limits = merge_limits(global_limits, &raw.limits);
    let timeouts = merge_timeouts(global_timeouts, &raw.timeouts);
    let error_pages =
        global
            .error_pages
            .overlay(&compile_error_pages(sf, &raw.error_pages, errors));
    let tls = raw.tls.as_ref().map(|t| SiteTls {
        redirect_http: t.redirect_http.unwrap_or(true),
        redirect_exempt: t
            .redirect_exempt
            .clone()
            .unwrap_or_else(|| vec!["/.well-known/acme-challenge/".to_string()]),
        hsts: t.hsts_max_age.map(|d| {
            let mut v = format!("max-age={}", d.0.as_secs());
            if t.hsts_include_subdomains {
                v.push_str("; includeSubDomains");
            }
            if t.hsts_preload {
                v.push_str("; preload");
            }
            v
        }),
    });
    Site {
        security_headers: raw.security_headers.unwrap_or(true),
        // Replaced by the compiled policy once the engine is known (see load_all).
        waf: Arc::new(crate::waf::SitePolicy::off()),
        waf_engine: None,
        series: std::sync::OnceLock::new(),
        tls,
        name,
        file: sf.path.clone(),
        hosts,
        pools,
        routes,
        default_pool,
        timeouts,
        limits,
        error_pages,
    }
}

fn compile_pool(
    sf: &SourceFile,
    site: &str,
    pname: &str,
    rp: &RawPool,
    health: &HealthRegistry,
    errors: &mut ConfigErrors,
) -> Pool {
    let lb = match rp.lb.as_ref().map(|s| s.get_ref().as_str()) {
        None | Some("round_robin") => LbPolicy::RoundRobin,
        Some("consistent_hash") => LbPolicy::ConsistentHash,
        Some(other) => {
            let span = rp.lb.as_ref().map(|s| s.span()).unwrap_or(0..0);
            errors.push(sf.error(
                span,
                format!("unknown lb {other:?}: expected \"round_robin\" or \"consistent_hash\""),
            ));
            LbPolicy::RoundRobin
        }
    };
    if rp.backends.get_ref().is_empty() {
        errors.push(sf.error(
            rp.backends.span(),
            format!("pool {pname:?} has no backends"),
        ));
    }
    let mut backends = Vec::new();
    for spec in rp.backends.get_ref() {
        let span = spec.span();
        let b = &spec.get_ref().0;
        let weight = match b.weight {
            Some(w) if w == 0 || w > 1000 => {
                errors.push(sf.error(
                    span.clone(),
                    format!("weight {w} out of range: expected 1-1000"),
                ));
                1
            }
            Some(w) => w,
            None => 1,
        };
        let text = b.addr.trim();
        let host = match text.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok() => {
                h.trim_start_matches('[').trim_end_matches(']').to_string()
            }
            _ => {
                errors.push(sf.error(
                    span.clone(),
                    format!("invalid backend {text:?}: expected \"host:port\""),
                ));
                continue;
            }
        };
        let addr = match text.to_socket_addrs() {
            Ok(mut it) => match it.next() {
                Some(a) => a,
                None => {
                    errors.push(sf.error(
                        span.clone(),
                        format!("backend {text:?} resolves to no address"),
                    ));
                    continue;
                }
            },
            Err(e) => {
                errors.push(sf.error(
                    span.clone(),
                    format!("cannot resolve backend {text:?}: {e}"),
                ));
                continue;
            }
        };
        let key = format!("{site}/{pname}/{addr}");
        backends.push(Backend {
            addr,
            host,
            weight,
            health: health.get(&key),
            key,
        });
    }
    let tls = rp.tls.as_ref().map(|t| {
        let ca_der = t
            .ca_file
            .as_ref()
            .and_then(|ca| match load_ca(&sf.resolve(ca.get_ref())) {
                Ok(v) => Some(Arc::new(v)),
                Err(msg) => {
                    errors.push(sf.error(ca.span(), msg));
                    None
                }
            });
        let sni = t
            .sni
            .clone()
            .unwrap_or_else(|| backends.first().map(|b| b.host.clone()).unwrap_or_default());
        UpstreamTls {
            sni,
            ca_der,
            skip_verify: t.danger_skip_verify,
        }
    });
    let health_check = rp.health_check.as_ref().map(|h| {
        let path = h.path.as_ref().map(|p| p.get_ref().clone()).unwrap_or_else(|| "/".to_string());
        if !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            let span = h.path.as_ref().map(|p| p.span()).unwrap_or(0..0);
            errors.push(sf.error(span, format!("health check path {path:?} must start with '/' and contain no spaces or control characters")));
        }
        HealthCheck {
            path,
            host: h.host.clone(),
            interval: h.interval.map(|d| d.0).unwrap_or(Duration::from_secs(5)).max(Duration::from_millis(100)),
            timeout: h.timeout.map(|d| d.0).unwrap_or(Duration::from_secs(2)),
            expect_status: h.expect_status.clone().unwrap_or_else(|| vec![200]),
            healthy_threshold: h.healthy_threshold.unwrap_or(2),
            unhealthy_threshold: h.unhealthy_threshold.unwrap_or(2),
        }
    });
    let passive = Passive {
        max_failures: rp.passive.max_failures.unwrap_or(3),
        eject_for: rp
            .passive
            .eject_for
            .map(|d| d.0)
            .unwrap_or(Duration::from_secs(10)),
    };
    Pool::new(pname.to_string(), backends, lb, tls, health_check, passive)
}

/// Reads a PEM file of CA certificates into DER blobs, checking each parses as X.509.
fn load_ca(path: &Path) -> Result<Vec<Vec<u8>>, String> {
    let data =
        std::fs::read(path).map_err(|e| format!("cannot read CA file {}: {e}", path.display()))?;
    let mut out = Vec::new();
    for item in rustls_pemfile::certs(&mut data.as_slice()) {
        let der = item.map_err(|e| format!("CA file {}: invalid PEM: {e}", path.display()))?;
        x509_parser::parse_x509_certificate(der.as_ref())
            .map_err(|e| format!("CA file {}: invalid certificate: {e}", path.display()))?;
        out.push(der.as_ref().to_vec());
    }
    if out.is_empty() {
        return Err(format!(
            "CA file {} holds no PEM certificate",
            path.display()
        ));
    }
    Ok(out)
}
