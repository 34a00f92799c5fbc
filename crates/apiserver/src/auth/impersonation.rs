//! User impersonation (`kubectl --as`, `--as-group`, `--as-uid`), as upstream's
//! `WithImpersonation` filter: after authentication, each `Impersonate-*` header asks for
//! one thing, each authorized on its own with the verb `impersonate` for the requesting
//! user; the request then runs as the impersonated user.
//!
//! | header                       | resource (API group)                            | name      |
//! |------------------------------|-------------------------------------------------|-----------|
//! | `Impersonate-User: u`        | `users` (""), or `serviceaccounts` in the SA's namespace for `system:serviceaccount:<ns>:<sa>` | `u` / `<sa>` |
//! | `Impersonate-Group: g`       | `groups` ("")                                   | `g`       |
//! | `Impersonate-Extra-<key>: v` | `userextras/<key>` (`authentication.k8s.io`)    | `v`       |
//! | `Impersonate-Uid: id`        | `uids` (`authentication.k8s.io`)                | `id`      |
//!
//! A refusal is upstream's 403 for the first thing not allowed (`users "x" is forbidden: User
//! "alice" cannot impersonate resource "users" in API group "" at the cluster scope`).
//! Groups, extras or a uid without a user are refused before anything is authorized
//! (upstream answers 500 there). Without `Impersonate-Group` a service account gets its
//! fixed groups; every impersonated user but `system:anonymous` is in
//! `system:authenticated` unless `system:unauthenticated` was asked for.

use std::collections::BTreeMap;

use http::HeaderMap;

use super::user::{AUTHENTICATED_GROUP, SERVICE_ACCOUNT_USER_PREFIX, UNAUTHENTICATED_GROUP};
use super::{RequestAttributes, UserInfo};
use crate::error::ApiError;
use crate::server::ApiServer;

const USER_HEADER: &str = "impersonate-user";
const GROUP_HEADER: &str = "impersonate-group";
const UID_HEADER: &str = "impersonate-uid";
const EXTRA_HEADER_PREFIX: &str = "impersonate-extra-";
/// The user of unauthenticated requests.
const ANONYMOUS: &str = "system:anonymous";
/// The API group of `userextras` and `uids`.
const AUTHENTICATION_GROUP: &str = "authentication.k8s.io";

/// One thing a request asks to impersonate.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Wanted {
    User(String),
    ServiceAccount { namespace: String, name: String },
    Group(String),
    Extra { key: String, value: String },
    Uid(String),
}

impl Wanted {
    /// What impersonating it means to the authorizers.
    fn attributes(&self) -> RequestAttributes {
        let imp = |group, resource, sub, ns, name| {
            RequestAttributes::resource("impersonate", group, resource, sub, ns, name)
        };
        match self {
            Wanted::User(u) => imp("", "users", "", "", u),
            Wanted::ServiceAccount { namespace, name } => {
                imp("", "serviceaccounts", "", namespace, name)
            }
            Wanted::Group(g) => imp("", "groups", "", "", g),
            Wanted::Extra { key, value } => imp(AUTHENTICATION_GROUP, "userextras", key, "", value),
            Wanted::Uid(id) => imp(AUTHENTICATION_GROUP, "uids", "", "", id),
        }
    }
}

/// `(namespace, name)` of a service account's user name, when both are valid names
/// (upstream's `serviceaccount.SplitUsername`).
fn split_service_account(user: &str) -> Option<(String, String)> {
    let (ns, name) = user
        .strip_prefix(SERVICE_ACCOUNT_USER_PREFIX)?
        .split_once(':')?;
    (!name.contains(':')
        && podvisor_api::validation::dns1123_label_errors(ns).is_empty()
        && podvisor_api::validation::dns1123_subdomain_errors(name).is_empty())
    .then(|| (ns.to_string(), name.to_string()))
}

/// `%`-escapes of an extra key undone, as upstream's `unescapeExtraKey` (a key that does
/// not unescape stays as it is).
fn unescape_extra_key(key: &str) -> String {
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            let Some(b) = hex else {
                return key.to_string();
            };
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| key.to_string())
}

/// The impersonation requests of `headers`, in upstream's order (user, groups, extras,
/// uid); empty when there are none. A header that is not text is ignored, as one that
/// is absent.
fn wanted(headers: &HeaderMap) -> Result<Vec<Wanted>, ApiError> {
    let text = |v: &http::HeaderValue| v.to_str().ok().map(str::to_string);
    let mut out = Vec::new();
    let user = headers
        .get(USER_HEADER)
        .and_then(text)
        .filter(|u| !u.is_empty());
    if let Some(u) = &user {
        out.push(match split_service_account(u) {
            Some((namespace, name)) => Wanted::ServiceAccount { namespace, name },
            None => Wanted::User(u.clone()),
        });
    }
    out.extend(
        headers
            .get_all(GROUP_HEADER)
            .iter()
            .filter_map(text)
            .map(Wanted::Group),
    );
    let mut extras: Vec<(&str, &http::HeaderValue)> = headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().strip_prefix(EXTRA_HEADER_PREFIX)?, v)))
        .collect();
    extras.sort_by_key(|(k, _)| *k);
    out.extend(extras.into_iter().filter_map(|(k, v)| {
        Some(Wanted::Extra {
            key: unescape_extra_key(k),
            value: text(v)?,
        })
    }));
    if let Some(id) = headers
        .get(UID_HEADER)
        .and_then(text)
        .filter(|u| !u.is_empty())
    {
        out.push(Wanted::Uid(id));
    }
    if user.is_none() && !out.is_empty() {
        return Err(ApiError::new(
            500,
            "InternalError",
            "requested groups, extras or a uid without impersonating a user".to_string(),
        ));
    }
    Ok(out)
}

/// The user `headers` ask to act as, once `requestor` may impersonate each part of it;
/// `None` when they ask for nothing. The `Impersonate-*` headers are removed.
pub(crate) async fn impersonate(
    srv: &ApiServer,
    requestor: &UserInfo,
    headers: &mut HeaderMap,
) -> Result<Option<UserInfo>, ApiError> {
    let wanted = wanted(headers)?;
    if wanted.is_empty() {
        return Ok(None);
    }
    let groups_given = headers.contains_key(GROUP_HEADER);
    let mut acting = UserInfo::default();
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for w in &wanted {
        super::check(srv, requestor, &w.attributes()).await?;
        match w {
            Wanted::User(u) => acting.name = u.clone(),
            Wanted::ServiceAccount { namespace, name } => {
                acting.name = format!("{SERVICE_ACCOUNT_USER_PREFIX}{namespace}:{name}");
                if !groups_given {
                    acting.groups = vec![
                        "system:serviceaccounts".to_string(),
                        format!("system:serviceaccounts:{namespace}"),
                    ];
                }
            }
            Wanted::Group(g) => acting.groups.push(g.clone()),
            Wanted::Extra { key, value } => {
                extra.entry(key.clone()).or_default().push(value.clone())
            }
            Wanted::Uid(id) => acting.uid = id.clone(),
        }
    }
    let implied = if acting.name == ANONYMOUS {
        (!acting.in_group(UNAUTHENTICATED_GROUP)).then_some(UNAUTHENTICATED_GROUP)
    } else {
        (!acting.in_group(AUTHENTICATED_GROUP) && !acting.in_group(UNAUTHENTICATED_GROUP))
            .then_some(AUTHENTICATED_GROUP)
    };
    acting.groups.extend(implied.map(String::from));
    acting.extra = extra;
    let names: Vec<http::HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("impersonate-"))
        .cloned()
        .collect();
    for n in names {
        headers.remove(n);
    }
    Ok(Some(acting))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn headers_name_users_service_accounts_groups_extras_and_uids() {
        assert_eq!(wanted(&HeaderMap::new()).unwrap(), vec![]);
        assert_eq!(
            wanted(&headers(&[
                ("Impersonate-Uid", "42"),
                ("Impersonate-Group", "g1"),
                ("Impersonate-User", "system:node:n1"),
                ("Impersonate-Group", "system:nodes"),
                ("Impersonate-Extra-Scopes", "view"),
                ("Impersonate-Extra-example.com%2fteam", "a"),
            ]))
            .unwrap(),
            vec![
                Wanted::User("system:node:n1".into()),
                Wanted::Group("g1".into()),
                Wanted::Group("system:nodes".into()),
                Wanted::Extra {
                    key: "example.com/team".into(),
                    value: "a".into()
                },
                Wanted::Extra {
                    key: "scopes".into(),
                    value: "view".into()
                },
                Wanted::Uid("42".into()),
            ]
        );
        assert_eq!(
            wanted(&headers(&[(
                "Impersonate-User",
                "system:serviceaccount:kube-system:kube-proxy"
            )]))
            .unwrap(),
            vec![Wanted::ServiceAccount {
                namespace: "kube-system".into(),
                name: "kube-proxy".into()
            }]
        );
        // Not a valid service-account name: an ordinary user name.
        for odd in [
            "system:serviceaccount:a:b:c",
            "system:serviceaccount:Bad:x",
            "system:serviceaccount::x",
        ] {
            assert_eq!(
                wanted(&headers(&[("Impersonate-User", odd)])).unwrap(),
                vec![Wanted::User(odd.into())]
            );
        }
        let e = wanted(&headers(&[("Impersonate-Group", "g")])).unwrap_err();
        assert_eq!(e.code, 500);
        assert_eq!(unescape_extra_key("a%zz"), "a%zz");
    }

    #[test]
    fn each_part_is_authorized_as_its_own_resource() {
        let a = Wanted::ServiceAccount {
            namespace: "ns".into(),
            name: "sa".into(),
        }
        .attributes();
        assert_eq!(
            (a.verb.as_str(), a.resource.as_str(), a.namespace.as_str()),
            ("impersonate", "serviceaccounts", "ns")
        );
        assert_eq!(
            Wanted::User("system:node:n1".into())
                .attributes()
                .forbidden_message("alice"),
            r#"User "alice" cannot impersonate resource "users" in API group "" at the cluster scope"#
        );
        assert_eq!(
            Wanted::Extra {
                key: "scopes".into(),
                value: "v".into()
            }
            .attributes()
            .forbidden_message("alice"),
            r#"User "alice" cannot impersonate resource "userextras/scopes" in API group "authentication.k8s.io" at the cluster scope"#
        );
    }
}
