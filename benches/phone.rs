//! `cargo bench --bench phone`: the cost of reading numbers, part by part, on
//! the first 100,000 numbers of `gen-contacts 1000000 --seed 5` (run
//! `cargo bench --bench campaign` once to write the list).

use std::time::Instant;

fn main() {
    let text = std::fs::read_to_string("target/bench-data/contacts-1000000.csv")
        .expect("run `cargo bench --bench campaign` first: it writes the list");
    let numbers: Vec<&str> = text
        .lines()
        .skip(1)
        .take(100_000)
        .filter_map(|l| l.split(',').next())
        .collect();
    let us = phonenumber::country::Id::US;
    let t = Instant::now();
    let parsed: Vec<_> = numbers
        .iter()
        .filter_map(|n| {
            let plus = n.starts_with('+');
            phonenumber::parse(if plus { None } else { Some(us) }, n).ok()
        })
        .collect();
    let parse = t.elapsed();
    let t = Instant::now();
    let kinds = parsed
        .iter()
        .filter(|p| p.number_type(&phonenumber::metadata::DATABASE) != phonenumber::Type::Unknown)
        .count();
    let kind = t.elapsed();
    let t = Instant::now();
    let formatted: usize = parsed
        .iter()
        .map(|p| p.format().mode(phonenumber::Mode::E164).to_string().len())
        .sum();
    let format = t.elapsed();
    let t = Instant::now();
    let read = numbers
        .iter()
        .filter(|n| flowc::calendar::phone::parse(n, Some(us)).is_ok())
        .count();
    let ours = t.elapsed();
    let per = |d: std::time::Duration| d.as_secs_f64() * 1e6 / numbers.len() as f64;
    println!(
        "{} numbers ({kinds} valid, {formatted} bytes of E.164, {read} read)",
        numbers.len()
    );
    println!("  phonenumber::parse     {:>6.2} µs a number", per(parse));
    println!("  number_type            {:>6.2} µs", per(kind));
    println!("  format E.164           {:>6.2} µs", per(format));
    println!("  calendar::phone::parse {:>6.2} µs (all of it)", per(ours));
}
