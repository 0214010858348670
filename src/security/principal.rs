//! Who a connection is, as Kafka names it: `User:<name>` for a SASL login, the subject of
//! a client certificate (mTLS) mapped by `ssl.principal.mapping.rules`, and
//! `User:ANONYMOUS` for anyone else (PLAINTEXT, or SSL without a client certificate).

use regex::Regex;

/// The principal of a connection that proved nothing.
pub const ANONYMOUS: &str = "User:ANONYMOUS";

/// A SASL user's principal.
pub fn of_user(user: &str) -> String {
    format!("User:{user}")
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PrincipalError {
    #[error("invalid ssl.principal.mapping.rules at {at:?}: {reason}")]
    BadRule { at: String, reason: String },
    #[error("no ssl.principal.mapping.rules rule matches {0:?}")]
    NoMatchingRule(String),
    #[error("the client certificate cannot be read: {0}")]
    BadCertificate(String),
}

/// Kafka's `ssl.principal.mapping.rules`: the first rule whose pattern matches the whole
/// distinguished name gives the principal's name; `DEFAULT` gives the name as it is.
#[derive(Debug, Clone)]
pub struct MappingRules {
    rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
enum Rule {
    Default,
    Replace {
        /// The pattern anchored at both ends (Java's `Matcher.matches`).
        whole: Regex,
        pattern: Regex,
        /// In the regex crate's syntax (`${1}`), from Java's (`$1`, `\x`).
        replacement: String,
        case: Case,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Keep,
    Lower,
    Upper,
}

impl Default for MappingRules {
    fn default() -> Self {
        MappingRules {
            rules: vec![Rule::Default],
        }
    }
}

impl MappingRules {
    /// Parses a comma-separated list of `DEFAULT` and `RULE:pattern/replacement/[LU]`
    /// (a pattern may hold commas and `\/`).
    pub fn parse(text: &str) -> Result<MappingRules, PrincipalError> {
        let mut rules = Vec::new();
        let mut rest = text.trim_start();
        while !rest.is_empty() {
            let bad = |reason: &str| PrincipalError::BadRule {
                at: rest.chars().take(40).collect(),
                reason: reason.into(),
            };
            if let Some(after) = rest.strip_prefix("DEFAULT") {
                rules.push(Rule::Default);
                rest = after;
            } else if let Some(after) = rest.strip_prefix("RULE:") {
                let (pattern, after) =
                    until_slash(after).ok_or_else(|| bad("the pattern has no closing /"))?;
                let (replacement, after) =
                    until_slash(after).ok_or_else(|| bad("the replacement has no closing /"))?;
                let (case, after) = match after.chars().next() {
                    Some('L') => (Case::Lower, &after[1..]),
                    Some('U') => (Case::Upper, &after[1..]),
                    _ => (Case::Keep, after),
                };
                let compile = |source: &str| Regex::new(source).map_err(|e| bad(&e.to_string()));
                rules.push(Rule::Replace {
                    whole: compile(&format!("^(?:{pattern})$"))?,
                    pattern: compile(pattern)?,
                    replacement: java_replacement(replacement),
                    case,
                });
                rest = after;
            } else {
                return Err(bad("expected DEFAULT or RULE:pattern/replacement/[LU]"));
            }
            // Kafka ignores anything after a rule up to the next comma.
            rest = match rest.split_once(',') {
                Some((_, next)) => next.trim_start(),
                None => "",
            };
        }
        if rules.is_empty() {
            return Err(PrincipalError::BadRule {
                at: String::new(),
                reason: "no rules (use DEFAULT)".into(),
            });
        }
        Ok(MappingRules { rules })
    }

    /// The principal name for distinguished name `dn`.
    pub fn name_of(&self, dn: &str) -> Result<String, PrincipalError> {
        for rule in &self.rules {
            match rule {
                Rule::Default => return Ok(dn.to_string()),
                Rule::Replace {
                    whole,
                    pattern,
                    replacement,
                    case,
                } => {
                    if !whole.is_match(dn) {
                        continue;
                    }
                    let name = pattern.replace_all(dn, replacement.as_str());
                    return Ok(match case {
                        Case::Keep => name.into_owned(),
                        Case::Lower => name.to_lowercase(),
                        Case::Upper => name.to_uppercase(),
                    });
                }
            }
        }
        Err(PrincipalError::NoMatchingRule(dn.to_string()))
    }
}

/// The text up to the first `/` not escaped by `\`, and what follows that `/`.
fn until_slash(text: &str) -> Option<(&str, &str)> {
    let mut escaped = false;
    for (at, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '/' => return Some((&text[..at], &text[at + 1..])),
            _ => {}
        }
    }
    None
}

/// Java's replacement syntax (`$1`, `\$` for a dollar) in the regex crate's (`${1}`, `$$`).
fn java_replacement(java: &str) -> String {
    let mut out = String::with_capacity(java.len());
    let mut chars = java.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('$') => out.push_str("$$"),
                Some(other) => out.push(other),
                None => {}
            },
            '$' => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    digits.push(*d);
                    chars.next();
                }
                if digits.is_empty() {
                    out.push_str("$$");
                } else {
                    out.push_str(&format!("${{{digits}}}"));
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// The subject of a DER certificate as Java's `X500Principal.getName()` writes it (RFC
/// 2253): the most specific name first, `CN=alice,OU=eng,O=Example`.
pub fn subject_dn(certificate: &[u8]) -> Result<String, PrincipalError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate)
        .map_err(|error| PrincipalError::BadCertificate(error.to_string()))?;
    let rdns: Vec<String> = parsed
        .subject()
        .iter()
        .map(|rdn| {
            rdn.iter()
                .map(|attribute| {
                    let oid = attribute.attr_type().to_id_string();
                    let value = match attribute.as_str() {
                        Ok(text) => escape_rfc2253(text),
                        // Java writes a value it cannot show as text in hex.
                        Err(_) => format!("#{}", hex(attribute.as_slice())),
                    };
                    format!("{}={value}", short_name(&oid).unwrap_or(&oid))
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    Ok(rdns.into_iter().rev().collect::<Vec<_>>().join(","))
}

/// The keywords RFC 2253 (and Java) use for attribute types.
fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.9" => "STREET",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

fn escape_rfc2253(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (index, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (index == 0 && matches!(c, '#' | ' '))
            || (index == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kafka's documented example rules.
    #[test]
    fn kafka_s_example_rules_map_as_documented() {
        let rules = MappingRules::parse(
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/, \
             RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/L, \
             RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/L, DEFAULT",
        )
        .unwrap();
        assert_eq!(
            rules
                .name_of("CN=kafka-broker1,OU=ServiceUsers,O=Org")
                .unwrap(),
            "kafka-broker1"
        );
        assert_eq!(
            rules
                .name_of("CN=Alice,OU=Eng,O=Org,L=City,ST=State,C=US")
                .unwrap(),
            "alice@eng"
        );
        assert_eq!(rules.name_of("O=Org,CN=Bob.Smith").unwrap(), "bob.smith");
        assert_eq!(rules.name_of("O=Nobody").unwrap(), "O=Nobody");
        let strict = MappingRules::parse("RULE:^CN=([a-z]+)$/$1/U").unwrap();
        assert_eq!(strict.name_of("CN=carol").unwrap(), "CAROL");
        assert!(matches!(
            strict.name_of("OU=x"),
            Err(PrincipalError::NoMatchingRule(_))
        ));
    }

    #[test]
    fn bad_rules_are_refused_with_where() {
        for bad in ["RULE:^CN=(.*$/x/", "RULE:abc", "NONSENSE", "", "RULE:(/x/"] {
            assert!(MappingRules::parse(bad).is_err(), "{bad:?}");
        }
        // An escaped slash belongs to the pattern; a dollar can be literal.
        let rules = MappingRules::parse(r"RULE:^CN=a\/b$/x\$1/").unwrap();
        assert_eq!(rules.name_of("CN=a/b").unwrap(), "x$1");
    }

    #[test]
    fn a_certificate_subject_reads_as_java_writes_it() {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        let mut name = rcgen::DistinguishedName::new();
        name.push(rcgen::DnType::CountryName, "US");
        name.push(rcgen::DnType::OrganizationName, "Example, Inc");
        name.push(rcgen::DnType::OrganizationalUnitName, "eng");
        name.push(rcgen::DnType::CommonName, "alice");
        params.distinguished_name = name;
        let key = rcgen::KeyPair::generate().unwrap();
        let certificate = params.self_signed(&key).unwrap();
        assert_eq!(
            subject_dn(certificate.der()).unwrap(),
            r"CN=alice,OU=eng,O=Example\, Inc,C=US"
        );
        assert!(subject_dn(b"not a certificate").is_err());
    }
}
