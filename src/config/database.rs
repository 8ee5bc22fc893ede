//! Where capture is kept: a SQLite file or a Postgres URL (`[capture] database`, or the
//! environment variable `database_env` names). A URL's password is shown nowhere: `Display` and
//! `Debug` mask it, and only [`PostgresUrl::connection_url`] hands it to the driver.

use std::fmt;
use std::path::PathBuf;

/// The capture database.
#[derive(Clone, PartialEq)]
pub enum Database {
    /// A SQLite file, created if missing.
    Sqlite(PathBuf),
    /// A Postgres database shared by any number of replicas.
    Postgres(PostgresUrl),
}

impl Database {
    /// A `postgres://` or `postgresql://` URL is Postgres; anything else is a SQLite path.
    pub fn parse(text: &str) -> Result<Database, String> {
        if is_postgres_url(text) {
            PostgresUrl::parse(text).map(Database::Postgres)
        } else {
            Ok(Database::Sqlite(PathBuf::from(text)))
        }
    }

    /// The SQLite path, if this is one.
    pub fn sqlite_path(&self) -> Option<&std::path::Path> {
        match self {
            Database::Sqlite(p) => Some(p),
            Database::Postgres(_) => None,
        }
    }
}

/// Whether `text` is a Postgres URL (by its scheme).
pub fn is_postgres_url(text: &str) -> bool {
    let lower = text.get(..13).unwrap_or(text).to_ascii_lowercase();
    lower.starts_with("postgres://") || lower.starts_with("postgresql://")
}

impl From<PathBuf> for Database {
    fn from(path: PathBuf) -> Database {
        Database::Sqlite(path)
    }
}

impl fmt::Display for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Database::Sqlite(p) => write!(f, "{}", p.display()),
            Database::Postgres(u) => u.fmt(f),
        }
    }
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Database::Sqlite(p) => f.debug_tuple("Sqlite").field(p).finish(),
            Database::Postgres(u) => f.debug_tuple("Postgres").field(u).finish(),
        }
    }
}

/// libpq's `sslmode`: whether to use TLS and what to check of the server's certificate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it, else plain; the certificate is not checked (libpq's
    /// default).
    #[default]
    Prefer,
    /// TLS or fail; the certificate is not checked (unless `sslrootcert` is given: then as
    /// `verify-ca`, as libpq does).
    Require,
    /// TLS; the certificate must chain to a trusted root (`sslrootcert`, else the web's roots).
    VerifyCa,
    /// As `verify-ca`, and the certificate must name the host.
    VerifyFull,
}

impl SslMode {
    fn parse(text: &str) -> Option<SslMode> {
        Some(match text {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }
}

/// A Postgres connection URL with its TLS settings taken out (the driver does not know
/// `verify-ca`, `verify-full` or `sslrootcert`; `store` applies them).
#[derive(Clone, PartialEq)]
pub struct PostgresUrl {
    /// The URL without `sslmode` and `sslrootcert`; holds the password.
    url: String,
    pub ssl_mode: SslMode,
    /// `sslrootcert`: PEM file of the roots to trust instead of the web's.
    pub root_cert: Option<PathBuf>,
}

impl PostgresUrl {
    /// Parses `postgres://user:password@host:port/database?sslmode=...&...`. The driver's own
    /// parser checks the rest of the URL when the store connects (and `check-config` runs it).
    pub fn parse(text: &str) -> Result<PostgresUrl, String> {
        if !is_postgres_url(text) {
            return Err("a Postgres URL starts with postgres:// or postgresql://".into());
        }
        let (base, query) = text.split_once('?').unwrap_or((text, ""));
        let mut kept = Vec::new();
        let mut ssl_mode = SslMode::default();
        let mut root_cert = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "sslmode" => {
                    ssl_mode = SslMode::parse(&percent_decode(value)).ok_or_else(|| {
                        format!(
                            "sslmode {value:?}: use disable, prefer, require, verify-ca or \
                             verify-full"
                        )
                    })?;
                }
                "sslrootcert" => root_cert = Some(PathBuf::from(percent_decode(value))),
                "sslcert" | "sslkey" | "sslpassword" => {
                    return Err(format!(
                        "{key}: client certificates for Postgres are not supported; use a \
                         password (database_env keeps it out of the file)"
                    ));
                }
                _ => kept.push(pair),
            }
        }
        let url = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        if ssl_mode == SslMode::Require && root_cert.is_some() {
            ssl_mode = SslMode::VerifyCa;
        }
        Ok(PostgresUrl {
            url,
            ssl_mode,
            root_cert,
        })
    }

    /// The password in the URL's user part, if any (for the redactor's list of secrets).
    pub fn password(&self) -> Option<&str> {
        let (_, rest) = self.url.split_once("://")?;
        let userinfo = rest.split(['/', '?']).next()?.rsplit_once('@')?.0;
        userinfo
            .split_once(':')
            .map(|(_, p)| p)
            .filter(|p| !p.is_empty())
    }

    /// The URL for the driver, password included: never log it.
    pub fn connection_url(&self) -> &str {
        &self.url
    }

    /// The URL with its password (in the user part or a `password=` parameter) replaced by
    /// `***`, and the TLS settings put back.
    pub fn masked(&self) -> String {
        let (scheme, rest) = self.url.split_once("://").unwrap_or(("", &self.url));
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let authority = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => match userinfo.split_once(':') {
                Some((user, _)) => format!("{user}:***@{hosts}"),
                None => format!("{userinfo}@{hosts}"),
            },
            None => authority.to_owned(),
        };
        let tail = match tail.split_once('?') {
            Some((path, query)) => {
                let query: Vec<String> = query
                    .split('&')
                    .map(|pair| match pair.split_once('=') {
                        Some(("password", _)) => "password=***".to_owned(),
                        _ => pair.to_owned(),
                    })
                    .collect();
                format!("{path}?{}", query.join("&"))
            }
            None => tail.to_owned(),
        };
        let mut out = format!("{scheme}://{authority}{tail}");
        let mode = match self.ssl_mode {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        };
        out.push(if out.contains('?') { '&' } else { '?' });
        out.push_str("sslmode=");
        out.push_str(mode);
        if let Some(root) = &self.root_cert {
            out.push_str(&format!("&sslrootcert={}", root.display()));
        }
        out
    }
}

impl fmt::Display for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PostgresUrl({})", self.masked())
    }
}

/// `%XX` escapes decoded (URL parameter values); malformed escapes are kept as they are.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push(((hex(h).unwrap_or(0) << 4) | hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_is_sqlite_and_a_url_is_postgres() {
        assert_eq!(
            Database::parse("aloud.db").unwrap(),
            Database::Sqlite("aloud.db".into())
        );
        let Database::Postgres(u) = Database::parse("postgresql://h/db").unwrap() else {
            panic!("not postgres")
        };
        assert_eq!(u.ssl_mode, SslMode::Prefer);
        assert!(Database::parse("POSTGRES://h/db").is_ok_and(|d| d.sqlite_path().is_none()));
    }

    #[test]
    fn the_password_never_shows() {
        let u = PostgresUrl::parse(
            "postgres://aloud:s3cret%40x@db.internal:5432/capture?sslmode=verify-full&password=other&application_name=a",
        )
        .unwrap();
        let shown = format!("{u} {u:?} {:?}", Database::Postgres(u.clone()));
        assert!(
            !shown.contains("s3cret") && !shown.contains("other"),
            "{shown}"
        );
        assert_eq!(
            u.masked(),
            "postgres://aloud:***@db.internal:5432/capture?password=***&application_name=a&sslmode=verify-full"
        );
        assert_eq!(
            u.connection_url(),
            "postgres://aloud:s3cret%40x@db.internal:5432/capture?password=other&application_name=a"
        );
    }

    #[test]
    fn ssl_settings_are_taken_out_and_checked() {
        let u = PostgresUrl::parse("postgres://h/db?sslmode=require&sslrootcert=%2Fetc%2Fca.pem")
            .unwrap();
        assert_eq!(u.ssl_mode, SslMode::VerifyCa, "a root makes require verify");
        assert_eq!(u.root_cert, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(u.connection_url(), "postgres://h/db");
        assert!(PostgresUrl::parse("postgres://h/db?sslmode=allowed").is_err());
        assert!(PostgresUrl::parse("postgres://h/db?sslcert=c.pem").is_err());
        assert_eq!(
            PostgresUrl::parse("postgres://h/db?sslmode=disable")
                .unwrap()
                .ssl_mode,
            SslMode::Disable
        );
    }
}
