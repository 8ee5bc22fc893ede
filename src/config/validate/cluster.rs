//! `[cluster]`: whether the side channel spans replicas, and the Postgres URL they meet in.

use super::Ctx;
use crate::config::raw::RawCluster;
use crate::config::{ClusterConfig, ConfigError, Env, PostgresUrl};

pub(super) fn cluster(
    raw: RawCluster,
    ctx: &Ctx<'_>,
    env: &dyn Env,
) -> Result<ClusterConfig, ConfigError> {
    let url = postgres_url(&raw, ctx, env)?;
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
            "the side channel across replicas needs the Postgres the replicas share: set \
             cluster.database_env (an environment variable holding a postgres:// URL) or \
             cluster.database",
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
    PostgresUrl::parse(&text).map(Some).ok_or_else(|| {
        ctx.err(
            Some(span),
            key,
            "not a Postgres URL: write postgres://user:password@host:port/database",
        )
    })
}
