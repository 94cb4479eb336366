//! How amounts read, the same in the admin center and the CLI.

/// Cents as a decimal amount of the catalog's list-price currency, exactly (no floating point):
/// `12345` → `123.45`.
pub fn money(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

#[cfg(test)]
mod tests {
    #[test]
    fn amounts_keep_every_cent() {
        assert_eq!(super::money(0), "0.00");
        assert_eq!(super::money(7), "0.07");
        assert_eq!(super::money(276_000), "2760.00");
        // Beyond f64's exact integers a float formatting would round; this does not.
        assert_eq!(super::money(9_007_199_254_740_993), "90071992547409.93");
    }
}
