//! What an item costs by DynamoDB's documented rules: its size, and the read and write
//! capacity units an operation on it consumes. Written here because neither the SDK nor the
//! local endpoint (moto reports no real consumed capacity) computes it; the stores' sizing
//! tests and the cost table in `make bench` use it.
//!
//! The rules ("Item sizes and formats", "Read/write capacity units" in the DynamoDB guide):
//! - an item is the sum of its attributes, each its name's UTF-8 length plus its value's size;
//! - a string is its UTF-8 length, binary its byte length, a boolean or null 1 byte;
//! - a number is 1 byte per two significant digits (leading and trailing zeros trimmed) plus
//!   1 byte;
//! - a list or map is 3 bytes plus 1 byte per element plus its elements (a map's keys count as
//!   names); a set is the sum of its elements;
//! - a write costs 1 WCU per KB (1,024 bytes, rounded up), a strongly consistent read 1 RCU per
//!   4 KB, an eventually consistent one half that; in a transaction each is doubled.

use aws_sdk_dynamodb::types::AttributeValue;

use crate::dynamo::Item;

/// Bytes an item counts as.
pub fn item_bytes(item: &Item) -> usize {
    item.iter()
        .map(|(name, value)| name.len() + value_bytes(value))
        .sum()
}

/// Bytes an attribute value counts as (without its name).
pub fn value_bytes(value: &AttributeValue) -> usize {
    match value {
        AttributeValue::S(text) => text.len(),
        AttributeValue::N(number) => number_bytes(number),
        AttributeValue::B(blob) => blob.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::Ss(set) => set.iter().map(String::len).sum(),
        AttributeValue::Ns(set) => set.iter().map(|n| number_bytes(n)).sum(),
        AttributeValue::Bs(set) => set.iter().map(|b| b.as_ref().len()).sum(),
        AttributeValue::L(list) => 3 + list.iter().map(|v| 1 + value_bytes(v)).sum::<usize>(),
        AttributeValue::M(map) => {
            3 + map
                .iter()
                .map(|(name, v)| 1 + name.len() + value_bytes(v))
                .sum::<usize>()
        }
        // A type this SDK does not know yet: counted as nothing rather than guessed.
        _ => 0,
    }
}

/// A number's size: 1 byte per two significant digits, plus 1.
pub fn number_bytes(number: &str) -> usize {
    let digits: String = number.chars().filter(char::is_ascii_digit).collect();
    let significant = digits.trim_start_matches('0').trim_end_matches('0').len();
    significant.div_ceil(2) + 1
}

/// Write capacity units for writing an item of `bytes` (at least 1).
pub fn write_units(bytes: usize) -> u64 {
    (bytes.div_ceil(1024) as u64).max(1)
}

/// Read capacity units for a strongly consistent read of an item of `bytes` (at least 1).
pub fn consistent_read_units(bytes: usize) -> u64 {
    (bytes.div_ceil(4096) as u64).max(1)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn s(text: &str) -> AttributeValue {
        AttributeValue::S(text.into())
    }

    fn n(number: &str) -> AttributeValue {
        AttributeValue::N(number.into())
    }

    #[test]
    fn numbers_count_significant_digits() {
        assert_eq!(number_bytes("0"), 1);
        assert_eq!(number_bytes("7"), 2);
        assert_eq!(number_bytes("10000"), 2, "trailing zeros are trimmed");
        assert_eq!(number_bytes("12345"), 4);
        assert_eq!(number_bytes("1.5"), 2);
        assert_eq!(number_bytes("4294967295"), 6);
    }

    #[test]
    fn items_count_names_values_and_container_overhead() {
        let item: Item = HashMap::from([
            ("pk".to_string(), s("PRODUCT#1")),             // 2 + 9
            ("stock".to_string(), n("12")),                 // 5 + 2
            ("ok".to_string(), AttributeValue::Bool(true)), // 2 + 1
            (
                "m".to_string(),
                AttributeValue::M(HashMap::from([("q".to_string(), n("1"))])),
            ), // 1 + (3 + 1 + 1 + 2)
        ]);
        assert_eq!(item_bytes(&item), 11 + 7 + 3 + 8);
        assert_eq!(
            value_bytes(&AttributeValue::L(vec![s("ab"), n("5")])),
            3 + (1 + 2) + (1 + 2)
        );
    }

    #[test]
    fn capacity_units_round_up_per_kilobyte_and_four() {
        assert_eq!(write_units(1), 1);
        assert_eq!(write_units(1024), 1);
        assert_eq!(write_units(1025), 2);
        assert_eq!(consistent_read_units(4096), 1);
        assert_eq!(consistent_read_units(4097), 2);
        assert_eq!(write_units(0), 1, "every write costs at least one unit");
    }
}
