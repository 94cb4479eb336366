//! Daily proration, in integer cents so that charges and refunds add up exactly.

use crate::time::Timestamp;

/// The prorated amount for `seats` seats at `monthly_price_cents` each, for the whole days from
/// `from` until `until`. A year is 365 days and a month one twelfth of a year's price, charged daily.
pub fn prorate_cents(
    seats: u32,
    monthly_price_cents: u64,
    from: Timestamp,
    until: Timestamp,
) -> u64 {
    let days = from.days_until(until) as u128;
    // seats * price-per-year * days / 365, rounded half up; in u128, so that no price an
    // operator can set overflows.
    let numerator = seats as u128 * monthly_price_cents as u128 * 12 * days;
    u64::try_from((numerator + 182) / 365).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::DAY;

    #[test]
    fn a_full_year_costs_twelve_months() {
        let start = Timestamp(0);
        assert_eq!(prorate_cents(1, 2_300, start, start.plus_days(365)), 27_600);
    }

    #[test]
    fn the_largest_orders_do_not_overflow() {
        let start = Timestamp(0);
        let cents = prorate_cents(1_000_000, 100_000_000, start, start.plus_days(3 * 365));
        assert_eq!(cents, 1_000_000 * 100_000_000 * 36);
    }

    #[test]
    fn partial_days_count_as_started_days_and_nothing_is_negative() {
        let start = Timestamp(0);
        assert_eq!(prorate_cents(1, 3_650, start, Timestamp(DAY / 2)), 120);
        assert_eq!(prorate_cents(10, 3_650, start.plus_days(5), start), 0);
    }
}
