//! `[cluster]`: whether the side channel spans replicas, and the Postgres URL they meet in.

use super::Ctx;
use crate::config::raw::RawCluster;
use crate::config::{ClusterConfig, ConfigError, Database, Env, PostgresUrl};

/// `capture` is the capture database: when it is Postgres and `[cluster]` names none of its
/// own, the replicas meet there.
pub(super) fn cluster(
    raw: RawCluster,
    capture: &Database,
    ctx: &Ctx<'_>,
    env: &dyn Env,
) -> Result<ClusterConfig, ConfigError> {
    let url = match (postgres_url(&raw, ctx, env)?, capture) {
        (Some(url), _) => Some(url),
        (None, Database::Postgres(url)) => Some(url.clone()),
        (None, Database::Sqlite(_)) => None,
    };
    if !raw.enabled.unwrap_or(false) {
        return Ok(ClusterConfig::default());
    }
    match url {
        Some(url) => Ok(ClusterConfig {
            database: Some(url),
        }),
        None => Err(ctx.err(
            None,
            "cluster.enabled",
            "the side channel across replicas needs the Postgres the replicas share: use a \
             postgres:// capture database, or set cluster.database_env (an environment \
             variable holding a postgres:// URL) or cluster.database",
        )),
    }
}

/// The Postgres URL, from `database_env` (the variable's value) or `database`. The one place
/// that decides where the cluster's URL comes from, so a shared `[capture] database` can take
/// over here.
fn postgres_url(
    raw: &RawCluster,
    ctx: &Ctx<'_>,
    env: &dyn Env,
) -> Result<Option<PostgresUrl>, ConfigError> {
    let (text, span, key) = match (&raw.database_env, &raw.database) {
        (Some(_), Some(d)) => {
            return Err(ctx.err(
                Some(d.span()),
                "cluster.database",
                "set cluster.database or cluster.database_env, not both",
            ));
        }
        (Some(var), None) => {
            let Some(value) = env.var(var.get_ref()) else {
                return Err(ctx.err(
                    Some(var.span()),
                    "cluster.database_env",
                    format!("environment variable {} is unset or empty", var.get_ref()),
                ));
            };
            (value, var.span(), "cluster.database_env")
        }
        (None, Some(d)) => (d.get_ref().clone(), d.span(), "cluster.database"),
        (None, None) => return Ok(None),
    };
    PostgresUrl::parse(&text)
        .map(Some)
        .map_err(|e| ctx.err(Some(span), key, e))
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, Database, MapEnv};
    use std::path::Path;

    const ROUTE: &str = "[[routes]]\nname = \"a\"\nprefix = \"/a\"\nupstream = \"http://127.0.0.1:1\"\napi = \"openai\"\n";

    #[test]
    fn replicas_meet_in_the_postgres_capture_database_by_default() {
        let toml = format!(
            "[capture]\ndatabase = \"postgres://aloud:pw@db.internal/aloud\"\n[cluster]\nenabled = true\n{ROUTE}"
        );
        let c = Config::parse(&toml, Path::new("t.toml"), &MapEnv::default()).unwrap();
        let Database::Postgres(capture) = &c.capture.database else {
            panic!("capture is not Postgres: {:?}", c.capture.database);
        };
        assert_eq!(c.cluster.database.as_ref(), Some(capture));
        assert_eq!(capture.password(), Some("pw"));
    }

    #[test]
    fn a_sqlite_capture_needs_a_cluster_url_of_its_own() {
        let toml = format!("[cluster]\nenabled = true\n{ROUTE}");
        let e = Config::parse(&toml, Path::new("t.toml"), &MapEnv::default()).unwrap_err();
        assert!(e.to_string().contains("cluster.enabled"), "{e}");
    }
}
