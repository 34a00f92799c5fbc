//! `$(VAR)` expansion, as Kubernetes' `third_party/forked/golang/expansion`: used for a
//! container's `env` values, `command` and `args`, exec probe and hook commands, and volume
//! mounts' `subPathExpr`.
//!
//! Rules: `$(NAME)` becomes the value of `NAME` when it is defined; an undefined reference
//! stays as written; `$$` is an escaped `$` (so `$$(NAME)` gives the literal `$(NAME)`); a
//! `$(` without a closing parenthesis, and a `$` before anything else, stay as written.

use std::collections::BTreeMap;

/// Expands `$(VAR)` references in `input` from `env` (see the module documentation).
pub fn expand(input: &str, env: &BTreeMap<&str, &str>) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut i = 0;
    let mut last = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && i + 1 < bytes.len() {
            if bytes[i + 1] == b'$' {
                out.push_str(&input[last..i]);
                out.push('$');
                i += 2;
                last = i;
                continue;
            }
            if bytes[i + 1] == b'('
                && let Some(close) = input[i + 2..].find(')')
            {
                let name = &input[i + 2..i + 2 + close];
                out.push_str(&input[last..i]);
                match env.get(name) {
                    Some(v) => out.push_str(v),
                    None => out.push_str(&input[i..i + 3 + close]),
                }
                i += 3 + close;
                last = i;
                continue;
            }
        }
        i += 1;
    }
    out.push_str(&input[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> BTreeMap<&'static str, &'static str> {
        BTreeMap::from([("DIR", "/tmp/x"), ("EMPTY", "")])
    }

    #[test]
    fn defined_references_expand() {
        assert_eq!(expand("$(DIR)/health", &env()), "/tmp/x/health");
        assert_eq!(expand("a$(EMPTY)b", &env()), "ab");
        assert_eq!(expand("$(DIR)$(DIR)", &env()), "/tmp/x/tmp/x");
    }

    #[test]
    fn undefined_references_stay() {
        assert_eq!(expand("$(FROM)", &env()), "$(FROM)");
        assert_eq!(expand("x-$(NOPE)-$(DIR)", &env()), "x-$(NOPE)-/tmp/x");
    }

    #[test]
    fn double_dollar_escapes() {
        assert_eq!(expand("$$(DIR)", &env()), "$(DIR)");
        assert_eq!(expand("$$$$", &env()), "$$");
        assert_eq!(expand("$$$(DIR)", &env()), "$/tmp/x");
    }

    #[test]
    fn incomplete_syntax_stays() {
        assert_eq!(expand("$(", &env()), "$(");
        assert_eq!(expand("$(DIR", &env()), "$(DIR");
        assert_eq!(expand("$", &env()), "$");
        assert_eq!(expand("a$b", &env()), "a$b");
        assert_eq!(expand("", &env()), "");
    }

    #[test]
    fn multibyte_text_is_kept() {
        assert_eq!(expand("ü-$(DIR)-ß", &env()), "ü-/tmp/x-ß");
    }
}
