//! Rules that hold for a whole [`Config`], whatever filled it: the file parser enforces
//! them while it reads, and a config edited by the admin API or merged with the state
//! file is checked here before it may become a snapshot.

use std::collections::HashSet;

use super::{Config, PoolConfig, Scheme, StrategyKind, MAX_WEIGHT};

/// Checks `config`; the first broken rule is the error.
pub fn check(config: &Config) -> Result<(), String> {
    if config.pools.is_empty() {
        return Err("at least one pool is needed".to_string());
    }
    let mut names = HashSet::new();
    for pool in &config.pools {
        if !names.insert(pool.name.as_str()) {
            return Err(format!("duplicate pool name `{}`", pool.name));
        }
        check_pool(pool)?;
    }
    for (index, route) in config.routes.iter().enumerate() {
        if !names.contains(route.pool.as_str()) {
            return Err(format!("route {index} names pool `{}`, which does not exist", route.pool));
        }
        if route.path_prefix.as_ref().is_some_and(|prefix| !prefix.starts_with('/')) {
            return Err(format!("route {index}: `path_prefix` must start with '/'"));
        }
        if let Some(name) =
            route.limits.iter().find(|n| !config.limits.iter().any(|l| &l.name == *n))
        {
            return Err(format!("route {index} names limit `{name}`, which does not exist"));
        }
    }
    Ok(())
}

/// The rules of one pool: a valid name, unique backends with weights in range, and the
/// tables its strategy needs.
fn check_pool(pool: &PoolConfig) -> Result<(), String> {
    super::parse::value::pool_name(&pool.name)?;
    let mut seen = HashSet::new();
    for backend in &pool.backends {
        let identity = backend.address.authority().to_ascii_lowercase();
        if !seen.insert(identity) {
            return Err(format!("duplicate backend `{}` in pool `{}`", backend.address, pool.name));
        }
        if backend.weight > MAX_WEIGHT {
            return Err(format!("`weight` must be between 0 and {MAX_WEIGHT}"));
        }
        if backend.address.scheme == Scheme::Https {
            return Err("https backends are not supported yet in this build".to_string());
        }
        // An SRV name has no port of its own: its records give one per target.
        let portless =
            matches!(backend.resolve, super::Resolve::Srv | super::Resolve::Kubernetes(_));
        if backend.address.port == 0 && !portless {
            return Err(format!("backend `{}`: port 0 is not usable", backend.address));
        }
    }
    for label in &pool.draining {
        if !seen.contains(&label.to_ascii_lowercase()) {
            return Err(format!("pool `{}` drains `{label}`, which it does not hold", pool.name));
        }
    }
    if pool.strategy == StrategyKind::ConsistentHash && pool.hash.is_none() {
        return Err("consistent_hash needs a hash key".to_string());
    }
    if pool.strategy == StrategyKind::Sticky && pool.sticky.is_none() {
        return Err("sticky needs its cookie settings".to_string());
    }
    Ok(())
}

/// Checks that the admin listener is not open to the network without a token. Not part
/// of [`check`]: it applies to the address the admin listener really binds, which a
/// reload cannot move.
pub fn exposure(config: &Config) -> Result<(), String> {
    match config.admin.listen {
        Some(addr) if !addr.ip().is_loopback() && config.admin.token.is_none() => Err(format!(
            "the admin listener {addr} is not on loopback and `[admin] token` is not set; \
             set a token or listen on 127.0.0.1"
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BackendAddress, BackendConfig, RouteConfig};

    fn config() -> Config {
        let backend = |text: &str| BackendConfig {
            address: BackendAddress::parse(text).unwrap(),
            weight: 1,
            resolve: crate::config::Resolve::Once,
        };
        let mut config = Config::default();
        let backends = vec![backend("127.0.0.1:9001"), backend("127.0.0.1:9002")];
        config.pools.push(PoolConfig::new("web", StrategyKind::RoundRobin, backends));
        config
    }

    #[test]
    fn accepts_a_valid_config() {
        assert_eq!(check(&config()), Ok(()));
    }

    #[test]
    fn refuses_what_the_parser_refuses() {
        let mut c = config();
        c.pools[0].backends[1].weight = MAX_WEIGHT + 1;
        assert!(check(&c).unwrap_err().contains("weight"));
        let mut c = config();
        let copy = c.pools[0].backends[0].clone();
        c.pools[0].backends.push(copy);
        assert!(check(&c).unwrap_err().contains("duplicate backend"));
        let mut c = config();
        c.pools.push(c.pools[0].clone());
        assert!(check(&c).unwrap_err().contains("duplicate pool"));
        let mut c = config();
        c.routes.push(RouteConfig {
            host: None,
            path_prefix: None,
            pool: "nope".into(),
            acl: Default::default(),
            rules: Default::default(),
            limits: Vec::new(),
        });
        assert!(check(&c).unwrap_err().contains("does not exist"));
        let mut c = config();
        c.pools[0].name = "bad name".into();
        assert!(check(&c).is_err());
        let mut c = config();
        c.pools[0].draining.insert("127.0.0.1:1".into());
        assert!(check(&c).unwrap_err().contains("does not hold"));
        let mut c = config();
        c.pools.clear();
        assert!(check(&c).is_err());
    }

    #[test]
    fn refuses_open_admin_without_token() {
        let mut config = Config::default();
        config.admin.listen = Some("0.0.0.0:9901".parse().unwrap());
        assert!(exposure(&config).unwrap_err().contains("token"));
        config.admin.token = Some("t".into());
        assert!(exposure(&config).is_ok());
        config.admin.token = None;
        config.admin.listen = Some("[::1]:9901".parse().unwrap());
        assert!(exposure(&config).is_ok());
    }
}
