//! Rows written as JSON text while they arrive, under the row and byte caps.

use std::fmt;

use serde::Serialize;

use super::*;

/// Collects a read's rows within its row limit and byte cap, as the backend streams them,
/// writing them as JSON text straight away.
pub(crate) struct RowCollector {
    /// `[` and the rows so far, comma-separated.
    pub(super) text: String,
    rows: usize,
    options: ReadOptions,
    /// How long the text was when the read last let other tasks run.
    yielded_at: usize,
    /// With a byte budget, where each row's text ends, to cut the result back to whole rows.
    row_ends: Vec<usize>,
    /// Whether a row was left out to keep within the byte budget.
    over_budget: bool,
}

impl RowCollector {
    /// How much text a read writes before it lets other tasks on its thread run.
    const YIELD_EVERY: usize = 1 << 20;

    pub(crate) fn new(options: ReadOptions) -> Self {
        RowCollector {
            text: String::from("["),
            rows: 0,
            options,
            yielded_at: 0,
            row_ends: Vec::new(),
            over_budget: false,
        }
    }

    /// Whether the read has written [`Self::YIELD_EVERY`] bytes since it last yielded: then
    /// it should yield, so that a large result never holds the event loop for long. Counts
    /// this as a yield.
    pub(crate) fn should_yield(&mut self) -> bool {
        let due = self.text.len() - self.yielded_at.min(self.text.len()) >= Self::YIELD_EVERY;
        if due {
            self.yielded_at = self.text.len();
        }
        due
    }

    /// The refusal of a result over the byte cap.
    pub(crate) fn too_large(&self) -> AdapterError {
        result_too_large(self.options.max_bytes)
    }

    /// How many bytes of text are written so far.
    pub(crate) fn written(&self) -> usize {
        self.text.len()
    }

    /// Whether the limit or the byte budget is reached: a further row only means the result is
    /// truncated.
    pub(crate) fn is_full(&self) -> bool {
        self.rows >= self.options.limit || self.over_budget
    }

    /// Starts a row: write its values through the [`RowWriter`], then [`end`](RowWriter::end)
    /// it. A row left unended is only ever followed by the read's failure.
    pub(crate) fn row(&mut self) -> RowWriter<'_> {
        if self.rows > 0 {
            self.text.push(',');
        }
        self.text.push('[');
        RowWriter { collector: self, first: true }
    }

    /// Adds a row of values (the backends write theirs through [`row`](Self::row)).
    #[cfg(test)]
    pub(crate) fn push(&mut self, values: &[serde_json::Value]) -> Result<(), AdapterError> {
        if self.rows > 0 {
            self.text.push(',');
        }
        write_row(&mut self.text, values);
        self.ended_row()
    }

    /// Counts a row just written. After the first, room is made for as many more of its size
    /// as the limit lets come, up to the byte cap and 1 MiB, rather than growing a step at a
    /// time.
    fn ended_row(&mut self) -> Result<(), AdapterError> {
        if let Some(budget) = self.options.budget_bytes {
            if self.text.len() + 1 > budget {
                // Left out whole: the result ends with the row before, marked truncated.
                self.text.truncate(self.row_ends.last().copied().unwrap_or(1));
                self.over_budget = true;
                return Ok(());
            }
            self.row_ends.push(self.text.len());
        }
        self.rows += 1;
        if self.rows == 1 {
            let expected = self.text.len().saturating_mul(self.options.limit.saturating_sub(1));
            self.text.reserve(expected.min(self.options.max_bytes).min(1 << 20));
        }
        self.check()
    }

    /// Replaces values already written: each range of the text (in order, not overlapping)
    /// with the JSON text given for it. Then the byte cap is checked again.
    pub(crate) fn replace(
        &mut self,
        mut replacements: Vec<(std::ops::Range<usize>, String)>,
    ) -> Result<(), AdapterError> {
        if self.over_budget {
            // Values of a row left out for the byte budget are not in the text any more.
            let kept = self.text.len();
            replacements.retain(|(range, _)| range.start < kept);
        }
        if replacements.is_empty() {
            return Ok(());
        }
        let mut text = String::with_capacity(self.text.len());
        let mut copied = 0;
        // How far the text after the replacements so far has moved, to move the row ends by.
        let (mut shift, mut moved) = (0isize, 0);
        for (range, value) in replacements {
            let kept = self
                .text
                .get(copied..range.start)
                .filter(|_| range.start <= range.end && self.text.is_char_boundary(range.end))
                .ok_or_else(|| AdapterError::invalid("a value to replace is out of place"))?;
            while let Some(end) = self.row_ends.get_mut(moved).filter(|end| **end <= range.start) {
                *end = end.saturating_add_signed(shift);
                moved += 1;
            }
            text.push_str(kept);
            text.push_str(&value);
            shift += value.len() as isize - (range.end - range.start) as isize;
            copied = range.end;
        }
        text.push_str(&self.text[copied..]);
        self.text = text;
        for end in self.row_ends.iter_mut().skip(moved) {
            *end = end.saturating_add_signed(shift);
        }
        self.check()?;
        self.keep_within_budget();
        Ok(())
    }

    /// Leaves out rows from the end until the text, closing bracket included, is within the
    /// byte budget.
    fn keep_within_budget(&mut self) {
        let Some(budget) = self.options.budget_bytes else { return };
        while self.rows > 0 && self.text.len() + 1 > budget {
            self.row_ends.pop();
            self.rows -= 1;
            self.text.truncate(self.row_ends.last().copied().unwrap_or(1));
            self.over_budget = true;
        }
    }

    /// Refuses the result once its text, closing bracket included, is over the byte cap.
    fn check(&self) -> Result<(), AdapterError> {
        if self.text.len() + 1 > self.options.max_bytes {
            return Err(self.too_large());
        }
        Ok(())
    }

    pub(crate) fn finish(mut self, columns: Vec<ResultColumn>, truncated: bool) -> QueryResult {
        self.text.push(']');
        QueryResult {
            columns,
            rows: JsonRows { text: self.text, count: self.rows },
            truncated: truncated || self.over_budget,
        }
    }
}

/// The refusal of a result over a cap of `max_bytes`.
pub(super) fn result_too_large(max_bytes: usize) -> AdapterError {
    AdapterError::of_kind(AdapterErrorKind::ResultTooLarge)
        .with_message(format!("the result exceeds {max_bytes} bytes; select fewer columns or rows"))
}

/// `[value,value,…]`.
pub(super) fn write_row(text: &mut String, values: &[serde_json::Value]) {
    text.push('[');
    for (index, value) in values.iter().enumerate() {
        if index > 0 {
            text.push(',');
        }
        json::text::value(text, value);
    }
    text.push(']');
}

/// A value longer than this is written off the event loop, through [`RowWriter::long_value`].
pub(crate) const LONG_VALUE_PIECE: usize = 256 << 10;

/// One row being written: a value at a time, in column order.
pub(crate) struct RowWriter<'c> {
    collector: &'c mut RowCollector,
    first: bool,
}

impl RowWriter<'_> {
    /// The length the text may not pass, whatever the next values are: the byte cap less the
    /// brackets that close the row and the result. A value that cannot be a number, a date or
    /// some other small thing is written within it (`json::text::string_within` and kin), so
    /// that no value is ever encoded past the cap.
    pub(crate) fn limit(&self) -> usize {
        self.collector.options.max_bytes.saturating_sub(2)
    }

    /// The refusal of a result over the byte cap.
    pub(crate) fn too_large(&self) -> AdapterError {
        self.collector.too_large()
    }

    /// The text to write the next value at the end of: exactly one JSON value.
    pub(crate) fn value(&mut self) -> &mut String {
        if !std::mem::take(&mut self.first) {
            self.collector.text.push(',');
        }
        &mut self.collector.text
    }

    /// Writes a long value from the database, text (as a JSON string, invalid UTF-8 replaced)
    /// or bytes (as base64), within the limit. Its size is checked first; then the work of
    /// writing it (a copy, escaping or encoding) is done on tokio's blocking pool, off the
    /// event loop, so that no value holds up the other calls and messages on it.
    pub(crate) async fn long_value(&mut self, value: &[u8], bytes: bool) -> Result<(), AdapterError> {
        let limit = self.limit();
        let max_bytes = self.collector.options.max_bytes;
        let out = self.value();
        let least = if bytes { value.len().div_ceil(3).saturating_mul(4) } else { value.len() };
        if out.len().saturating_add(least).saturating_add(2) > limit {
            return Err(result_too_large(max_bytes));
        }
        let (mut text, value) = (std::mem::take(out), value.to_vec());
        let task = tokio::task::spawn_blocking(move || {
            let written = if bytes {
                json::text::base64_within(&mut text, &value, limit)
            } else {
                json::text::lossy_within(&mut text, &value, limit)
            };
            (text, written)
        });
        let (text, written) =
            task.await.map_err(|join| AdapterError::new(AdapterErrorKind::Internal, join.to_string()))?;
        *self.collector_text() = text;
        written.map_err(|_| result_too_large(max_bytes))
    }

    /// The result's text, where the next value goes, without a separator before it.
    fn collector_text(&mut self) -> &mut String {
        &mut self.collector.text
    }

    /// Ends the row, or refuses the result when it has grown past the byte cap.
    pub(crate) fn end(self) -> Result<(), AdapterError> {
        self.collector.text.push(']');
        self.collector.ended_row()
    }
}

/// A read's rows as JSON text: an array of rows, each an array of values in column order
/// (see [`json`] for the value mapping). The backends write it as rows arrive, and it reaches
/// the caller as it is, without being taken apart and written again.
///
/// ```
/// use serde_json::json;
/// use sqlwarden::adapter::JsonRows;
///
/// let rows = JsonRows::from_values(&[vec![json!(1), json!("a\"b")], vec![json!(null), json!(2.5)]]);
/// assert_eq!(rows.len(), 2);
/// assert_eq!(rows.as_json(), r#"[[1,"a\"b"],[null,2.5]]"#);
/// assert_eq!(rows.to_values().unwrap()[1][1], json!(2.5));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct JsonRows {
    /// Always one JSON array of arrays: only this module writes it.
    text: String,
    count: usize,
}

impl JsonRows {
    /// Rows of JSON values, written as the backends write them.
    pub fn from_values(rows: &[Vec<serde_json::Value>]) -> JsonRows {
        let mut text = String::from("[");
        for (index, row) in rows.iter().enumerate() {
            if index > 0 {
                text.push(',');
            }
            write_row(&mut text, row);
        }
        text.push(']');
        JsonRows { text, count: rows.len() }
    }

    /// How many rows there are.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The rows as compact JSON text.
    pub fn as_json(&self) -> &str {
        &self.text
    }

    /// The rows with the values of the columns at `masks`' positions masked, within
    /// `budget_bytes` if given: rows that masking took past it are left out whole from the end,
    /// and the second member says whether any was. (This parses the text: it fails only on
    /// values nested deeper than `serde_json` reads, 128 levels.)
    pub fn masked(
        self,
        masks: &[(usize, Mask)],
        key: &MaskKey,
        budget_bytes: Option<usize>,
    ) -> Result<(JsonRows, bool), serde_json::Error> {
        if masks.is_empty() {
            return Ok((self, false));
        }
        let rows: Vec<Vec<&serde_json::value::RawValue>> = serde_json::from_str(&self.text)?;
        let mut text = String::with_capacity(self.text.len());
        text.push('[');
        let (mut count, mut cut) = (0, false);
        for row in &rows {
            let start = text.len();
            if count > 0 {
                text.push(',');
            }
            text.push('[');
            for (position, value) in row.iter().enumerate() {
                if position > 0 {
                    text.push(',');
                }
                match masks.iter().find(|(masked, _)| *masked == position) {
                    Some((_, mask)) => text.push_str(&mask.apply(value.get(), key)),
                    None => text.push_str(value.get()),
                }
            }
            text.push(']');
            if budget_bytes.is_some_and(|budget| text.len() + 1 > budget) {
                text.truncate(start);
                cut = true;
                break;
            }
            count += 1;
        }
        text.push(']');
        Ok((JsonRows { text, count }, cut))
    }

    /// The rows as JSON values. (This parses the text: it fails only on values nested deeper
    /// than `serde_json` reads, 128 levels.)
    pub fn to_values(&self) -> Result<Vec<Vec<serde_json::Value>>, serde_json::Error> {
        serde_json::from_str(&self.text)
    }
}

impl Default for JsonRows {
    fn default() -> Self {
        JsonRows { text: String::from("[]"), count: 0 }
    }
}

/// Shows the size of the rows, never their values.
impl fmt::Debug for JsonRows {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonRows").field("rows", &self.count).field("bytes", &self.text.len()).finish()
    }
}

/// The rows as they are: a JSON array of arrays.
impl Serialize for JsonRows {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let raw: &serde_json::value::RawValue = serde_json::from_str(&self.text).map_err(serde::ser::Error::custom)?;
        raw.serialize(serializer)
    }
}
