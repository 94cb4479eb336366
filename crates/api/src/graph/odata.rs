//! OData query options of the `/v1.0` surface, parsed into a typed query. Pure: no I/O.
//!
//! Only what is served is accepted — `$select`, `$top` (1..=999), `$skiptoken`, `$count`,
//! `$filter` (the forms in [`Condition`], joined with `and`) and `$search="displayName:…"`, each
//! where its endpoint allows it. Anything else is refused with a reason, never ignored: a query
//! option silently dropped returns wrong data.

use std::fmt;
use uuid::Uuid;

/// Largest page Graph serves for users (`$top` up to 999).
pub const MAX_TOP: u32 = 999;

/// One condition of `$filter`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// `assignedLicenses/any(x:x/skuId eq <guid>)`
    AssignedSku(Uuid),
    /// `userPrincipalName eq '…'`
    UserPrincipalName(String),
    /// `accountEnabled eq true|false`
    AccountEnabled(bool),
    /// `usageLocation eq '…'`
    UsageLocation(String),
    /// `startswith(displayName,'…')`
    DisplayNameStartsWith(String),
}

/// The options a request gave, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// Properties asked for (as the resource spells them), or all defaults.
    pub select: Option<Vec<String>>,
    pub top: Option<u32>,
    pub skiptoken: Option<String>,
    pub count: bool,
    pub filter: Vec<Condition>,
    /// The word of `$search="displayName:word"`.
    pub search: Option<String>,
    /// The options as given, in order (for a nextLink), without `$skiptoken`.
    pub carried: Vec<(String, String)>,
}

/// What an endpoint accepts.
#[derive(Debug, Clone, Copy)]
pub struct Allowed {
    /// Property names `$select` may name (empty: `$select` refused).
    pub properties: &'static [&'static str],
    /// Paging (`$top`, `$skiptoken`).
    pub paging: bool,
    /// `$count`, `$filter`, `$search` (user listings).
    pub filtering: bool,
}

/// Why a query was refused (400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

fn refuse(code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        code,
        message: message.into(),
    }
}

/// Decodes `application/x-www-form-urlencoded` text (a query string or a form body): `+` is a
/// space, `%XX` a byte; the result must be UTF-8.
pub fn decode_pairs(raw: &str) -> Result<Vec<(String, String)>, Refusal> {
    raw.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((decode(k)?, decode(v)?))
        })
        .collect()
}

fn decode(text: &str) -> Result<String, Refusal> {
    let spaced = text.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| {
            refuse(
                "MalformedQuery",
                "the query is not valid UTF-8 once decoded",
            )
        })
}

/// Parses the query string of a request to an endpoint that accepts `allowed`.
/// `eventual` tells whether the request carried `ConsistencyLevel: eventual`.
pub fn parse(raw: &str, allowed: Allowed, eventual: bool) -> Result<Query, Refusal> {
    let mut query = Query::default();
    let mut seen: Vec<String> = Vec::new();
    for (key, value) in decode_pairs(raw)? {
        let name = key.to_ascii_lowercase();
        if seen.contains(&name) {
            return Err(refuse(
                "DuplicateQueryOption",
                format!("the query option '{key}' is given more than once"),
            ));
        }
        seen.push(name.clone());
        match name.as_str() {
            "$select" if !allowed.properties.is_empty() => {
                query.select = Some(parse_select(&value, allowed.properties)?)
            }
            "$top" if allowed.paging => query.top = Some(parse_top(&value)?),
            "$skiptoken" if allowed.paging => {
                if value.is_empty() {
                    return Err(refuse("InvalidSkipToken", "$skiptoken is empty"));
                }
                query.skiptoken = Some(value);
                continue;
            }
            "$count" if allowed.filtering => {
                query.count = match value.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(refuse("InvalidCount", "$count must be true or false")),
                }
            }
            "$filter" if allowed.filtering => query.filter = parse_filter(&value)?,
            "$search" if allowed.filtering => query.search = Some(parse_search(&value)?),
            _ => {
                return Err(refuse(
                    "UnsupportedQueryOption",
                    format!("the query option '{key}' is not supported here"),
                ))
            }
        }
        query.carried.push((key, value));
    }
    if (query.count || query.search.is_some()) && !eventual {
        return Err(refuse(
            "ConsistencyLevelRequired",
            "$count and $search need the header ConsistencyLevel: eventual",
        ));
    }
    Ok(query)
}

fn parse_top(value: &str) -> Result<u32, Refusal> {
    match value.parse::<u32>() {
        Ok(n) if (1..=MAX_TOP).contains(&n) => Ok(n),
        _ => Err(refuse(
            "InvalidPageSize",
            format!("$top must be a whole number from 1 to {MAX_TOP}"),
        )),
    }
}

fn parse_select(value: &str, known: &[&'static str]) -> Result<Vec<String>, Refusal> {
    let mut properties = Vec::new();
    for raw in value.split(',') {
        let name = raw.trim();
        let Some(property) = known.iter().find(|k| k.eq_ignore_ascii_case(name)) else {
            return Err(refuse(
                "UnknownProperty",
                format!("$select names '{name}', which is not a property served here"),
            ));
        };
        if !properties.iter().any(|p: &String| p == property) {
            properties.push(property.to_string());
        }
    }
    Ok(properties)
}

fn parse_search(value: &str) -> Result<String, Refusal> {
    let bad = || {
        refuse(
            "InvalidSearch",
            "$search must be \"displayName:<text>\", with the double quotes",
        )
    };
    let inner = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .ok_or_else(bad)?;
    let (property, word) = inner.split_once(':').ok_or_else(bad)?;
    if !property.trim().eq_ignore_ascii_case("displayName") || word.trim().is_empty() {
        return Err(bad());
    }
    Ok(word.trim().to_string())
}

// ---- $filter ----------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Token {
    /// A name, path, keyword, GUID or boolean: `assignedLicenses/any`, `x:x/skuId`, `eq`.
    Word(String),
    Text(String),
    Open,
    Close,
    Comma,
}

fn tokens(text: &str) -> Result<Vec<Token>, Refusal> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            ' ' | '\t' => {
                chars.next();
            }
            '(' => {
                chars.next();
                out.push(Token::Open);
            }
            ')' => {
                chars.next();
                out.push(Token::Close);
            }
            ',' => {
                chars.next();
                out.push(Token::Comma);
            }
            '\'' => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some('\'') if chars.peek() == Some(&'\'') => {
                            chars.next();
                            s.push('\'');
                        }
                        Some('\'') => break,
                        Some(ch) => s.push(ch),
                        None => {
                            return Err(refuse(
                                "InvalidFilter",
                                "$filter has a string without its closing quote",
                            ))
                        }
                    }
                }
                out.push(Token::Text(s));
            }
            c if c.is_ascii_alphanumeric() || matches!(c, '/' | ':' | '-' | '_' | '.') => {
                let mut s = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_ascii_alphanumeric() || matches!(c, '/' | ':' | '-' | '_' | '.') {
                        s.push(c);
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push(Token::Word(s));
            }
            other => {
                return Err(refuse(
                    "InvalidFilter",
                    format!("$filter has an unexpected character '{other}'"),
                ))
            }
        }
    }
    Ok(out)
}

fn is_word(token: Option<&Token>, word: &str) -> bool {
    matches!(token, Some(Token::Word(w)) if w.eq_ignore_ascii_case(word))
}

const FILTER_FORMS: &str = "supported: assignedLicenses/any(x:x/skuId eq <guid>), userPrincipalName eq '…', accountEnabled eq true|false, usageLocation eq '…', startswith(displayName,'…'), joined with 'and'";

/// Parses `$filter`: conditions joined with `and`.
pub fn parse_filter(text: &str) -> Result<Vec<Condition>, Refusal> {
    let tokens = tokens(text)?;
    let mut conditions = Vec::new();
    let mut rest: &[Token] = &tokens;
    loop {
        let (condition, after) = condition(rest)?;
        conditions.push(condition);
        match after.first() {
            None => break,
            Some(t) if is_word(Some(t), "and") => rest = &after[1..],
            Some(_) => {
                return Err(refuse(
                    "InvalidFilter",
                    format!("$filter conditions must be joined with 'and'; {FILTER_FORMS}"),
                ))
            }
        }
    }
    Ok(conditions)
}

fn unsupported() -> Refusal {
    refuse(
        "UnsupportedFilter",
        format!("this $filter is not supported; {FILTER_FORMS}"),
    )
}

fn condition(t: &[Token]) -> Result<(Condition, &[Token]), Refusal> {
    match t {
        // startswith(displayName,'…')
        [Token::Word(f), Token::Open, Token::Word(p), Token::Comma, Token::Text(s), Token::Close, rest @ ..]
            if f.eq_ignore_ascii_case("startswith") && p.eq_ignore_ascii_case("displayName") =>
        {
            Ok((Condition::DisplayNameStartsWith(s.clone()), rest))
        }
        // assignedLicenses/any(x:x/skuId eq <guid>), also written `any(x: x/skuId eq …)`
        [Token::Word(path), Token::Open, Token::Word(lambda), Token::Word(eq), Token::Word(id), Token::Close, rest @ ..]
            if path.eq_ignore_ascii_case("assignedLicenses/any") =>
        {
            Ok((any_sku(lambda, eq, id)?, rest))
        }
        [Token::Word(path), Token::Open, Token::Word(var), Token::Word(body), Token::Word(eq), Token::Word(id), Token::Close, rest @ ..]
            if path.eq_ignore_ascii_case("assignedLicenses/any") && var.ends_with(':') =>
        {
            Ok((any_sku(&format!("{var}{body}"), eq, id)?, rest))
        }
        [Token::Word(p), Token::Word(eq), value, rest @ ..] if eq.eq_ignore_ascii_case("eq") => {
            let condition = match (p.to_ascii_lowercase().as_str(), value) {
                ("userprincipalname", Token::Text(s)) => Condition::UserPrincipalName(s.clone()),
                ("usagelocation", Token::Text(s)) => Condition::UsageLocation(s.clone()),
                ("accountenabled", Token::Word(b)) if b == "true" => {
                    Condition::AccountEnabled(true)
                }
                ("accountenabled", Token::Word(b)) if b == "false" => {
                    Condition::AccountEnabled(false)
                }
                _ => return Err(unsupported()),
            };
            Ok((condition, rest))
        }
        _ => Err(unsupported()),
    }
}

/// The body of `assignedLicenses/any(…)`: `x:x/skuId eq <guid>`.
fn any_sku(lambda: &str, eq: &str, id: &str) -> Result<Condition, Refusal> {
    let (var, body) = lambda.split_once(':').ok_or_else(unsupported)?;
    let property = body.strip_prefix(var).and_then(|b| b.strip_prefix('/'));
    if var.is_empty()
        || !eq.eq_ignore_ascii_case("eq")
        || !property.is_some_and(|p| p.eq_ignore_ascii_case("skuId"))
    {
        return Err(unsupported());
    }
    let sku = Uuid::parse_str(id)
        .map_err(|_| refuse("InvalidFilter", format!("'{id}' is not a skuId (a GUID)")))?;
    Ok(Condition::AssignedSku(sku))
}

#[cfg(test)]
mod tests {
    use super::*;

    const USERS: Allowed = Allowed {
        properties: &["id", "displayName", "userPrincipalName", "assignedLicenses"],
        paging: true,
        filtering: true,
    };
    const ONE: Allowed = Allowed {
        properties: &["id", "displayName"],
        paging: false,
        filtering: false,
    };
    const SKU: &str = "6fd2c87f-b296-42f0-b197-1e91e994b900";

    #[test]
    fn every_supported_filter_form_combined_with_and() {
        let q = parse_filter(&format!(
            "assignedLicenses/any(x:x/skuId eq {SKU}) and userPrincipalName eq 'O''Neil@contoso.com' \
             AND accountEnabled eq false and usageLocation eq 'DE' and startswith(displayName,'Ad')"
        ))
        .unwrap();
        assert_eq!(
            q,
            vec![
                Condition::AssignedSku(Uuid::parse_str(SKU).unwrap()),
                Condition::UserPrincipalName("O'Neil@contoso.com".into()),
                Condition::AccountEnabled(false),
                Condition::UsageLocation("DE".into()),
                Condition::DisplayNameStartsWith("Ad".into()),
            ]
        );
        // The lambda variable is the caller's choice, and a space may follow its colon.
        for form in [
            "any(lic:lic/skuId eq",
            "any(s: s/skuId eq",
            "ANY(x:x/SKUID EQ",
        ] {
            assert_eq!(
                parse_filter(&format!("assignedLicenses/{form} {SKU})")).unwrap(),
                vec![Condition::AssignedSku(Uuid::parse_str(SKU).unwrap())],
                "{form}"
            );
        }
    }

    #[test]
    fn filters_not_served_are_refused() {
        for bad in [
            "displayName eq 'x' or accountEnabled eq true",
            "accountEnabled ne true",
            "accountEnabled eq 'true'",
            "mail eq 'a@b.c'",
            "assignedLicenses/any(x:y/skuId eq 6fd2c87f-b296-42f0-b197-1e91e994b900)",
            "assignedLicenses/any(x:x/skuId eq not-a-guid)",
            "startswith(userPrincipalName,'a')",
            "userPrincipalName eq 'open",
            "accountEnabled eq true and",
            "",
            "(accountEnabled eq true)",
        ] {
            assert!(parse_filter(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn query_options_are_checked_per_endpoint() {
        let q = parse(
            "$select=displayName,ID&$top=999&$count=true&$search=%22displayName:ade%22&$skiptoken=42",
            USERS,
            true,
        )
        .unwrap();
        assert_eq!(q.select, Some(vec!["displayName".into(), "id".into()]));
        assert_eq!(q.top, Some(999));
        assert!(q.count);
        assert_eq!(q.search.as_deref(), Some("ade"));
        assert_eq!(q.skiptoken.as_deref(), Some("42"));
        assert!(
            q.carried.iter().all(|(k, _)| k != "$skiptoken"),
            "a nextLink carries a new $skiptoken, not the old one"
        );

        let code = |raw: &str, allowed: Allowed, eventual: bool| {
            parse(raw, allowed, eventual).unwrap_err().code
        };
        assert_eq!(code("$top=1000", USERS, false), "InvalidPageSize");
        assert_eq!(code("$top=0", USERS, false), "InvalidPageSize");
        assert_eq!(
            code("$orderby=displayName", USERS, false),
            "UnsupportedQueryOption"
        );
        assert_eq!(
            code("$expand=manager", USERS, false),
            "UnsupportedQueryOption"
        );
        assert_eq!(code("foo=bar", USERS, false), "UnsupportedQueryOption");
        assert_eq!(code("$top=5", ONE, false), "UnsupportedQueryOption");
        assert_eq!(code("$select=mail", USERS, false), "UnknownProperty");
        assert_eq!(
            code("$count=true", USERS, false),
            "ConsistencyLevelRequired"
        );
        assert_eq!(
            code("$search=%22displayName:a%22", USERS, false),
            "ConsistencyLevelRequired"
        );
        assert_eq!(code("$search=ade", USERS, true), "InvalidSearch");
        assert_eq!(code("$count=yes", USERS, true), "InvalidCount");
        assert_eq!(code("$top=5&$TOP=6", USERS, true), "DuplicateQueryOption");
        assert_eq!(code("$filter=%FF", USERS, true), "MalformedQuery");
        assert_eq!(parse("", USERS, false).unwrap(), Query::default());
    }

    #[test]
    fn form_decoding() {
        assert_eq!(
            decode_pairs("a=b+c&d=%2Fe%3D&flag").unwrap(),
            vec![
                ("a".into(), "b c".into()),
                ("d".into(), "/e=".into()),
                ("flag".into(), String::new())
            ]
        );
    }
}
