//! Any file an operator brings as a users mapping or a mail batch: the CSV reader returns rows
//! or a line-numbered error, never panics, and the line it names lies within the file.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let lines = data.iter().filter(|&&b| b == b'\n' || b == b'\r').count() as u64 + 1;
    let _ = tenantry_csv::text(data);
    match tenantry_csv::read_rows(data, |row| row.field(0).contains("UPN")) {
        Ok(rows) => {
            let mut last = 0;
            for row in &rows {
                assert!(
                    row.line >= 1 && row.line <= lines,
                    "row on line {}",
                    row.line
                );
                assert!(row.line >= last, "rows out of order");
                last = row.line;
            }
        }
        Err(e) => assert!(e.line >= 1 && e.line <= lines, "error on line {}", e.line),
    }
});
