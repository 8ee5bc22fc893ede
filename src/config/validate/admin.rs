//! `[admin]`: the admin listener's address (or `""` for none), its bearer token, the model
//! label cap.

use super::Ctx;
use crate::config::raw::RawAdmin;
use crate::config::{AdminConfig, ConfigError, Env, defaults};
use std::net::SocketAddr;

pub(super) fn admin(
    raw: RawAdmin,
    ctx: &Ctx<'_>,
    env: &dyn Env,
) -> Result<AdminConfig, ConfigError> {
    let listen = match &raw.listen {
        None => Some(
            defaults::ADMIN_LISTEN
                .parse::<SocketAddr>()
                .map_err(|_| ctx.err(None, "admin.listen", "bad default"))?,
        ),
        Some(l) if l.get_ref().trim().is_empty() => None,
        Some(l) => Some(l.get_ref().parse().map_err(|_| {
            ctx.err(
                Some(l.span()),
                "admin.listen",
                format!(
                    "{:?} is not an address like \"127.0.0.1:9787\" (or \"\" for no admin listener)",
                    l.get_ref()
                ),
            )
        })?),
    };
    let token = match &raw.token_env {
        None => None,
        Some(var) => {
            let token = env.var(var.get_ref()).unwrap_or_default().trim().to_owned();
            if token.is_empty() {
                return Err(ctx.err(
                    Some(var.span()),
                    "admin.token_env",
                    format!("environment variable {} is unset or empty", var.get_ref()),
                ));
            }
            Some(token)
        }
    };
    let max_model_labels = raw
        .max_model_labels
        .map_or(defaults::MAX_MODEL_LABELS, |n| *n.get_ref()) as usize;
    Ok(AdminConfig {
        listen,
        token,
        max_model_labels,
    })
}
