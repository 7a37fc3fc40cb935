//! Numbers as the guard estimates them: a known value, a parameter's (known once the query
//! runs), or arithmetic over them, always from above.

use super::*;

/// A number the guard reasons about: a constant, a parameter's value or length, or arithmetic
/// over them. Evaluated in floating point, which is exact far beyond any byte budget.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Num {
    Const(f64),
    /// The value of parameter `n` (0-based), as a number.
    Param(usize),
    /// The length in bytes of parameter `n` as text.
    ParamLen(usize),
    Add(Box<Num>, Box<Num>),
    Sub(Box<Num>, Box<Num>),
    Mul(Box<Num>, Box<Num>),
    Div(Box<Num>, Box<Num>),
    Pow(Box<Num>, Box<Num>),
    Neg(Box<Num>),
    Abs(Box<Num>),
    Max(Vec<Num>),
    Min(Vec<Num>),
}

impl Num {
    pub(super) fn add(self, other: Num) -> Num {
        Num::Add(Box::new(self), Box::new(other))
    }

    pub(super) fn mul(self, other: Num) -> Num {
        Num::Mul(Box::new(self), Box::new(other))
    }

    /// A count as the database takes it: at least zero.
    pub(super) fn count(self) -> Num {
        Num::Max(vec![self, Num::Const(0.0)])
    }

    pub(super) fn uses_params(&self) -> bool {
        match self {
            Num::Const(_) => false,
            Num::Param(_) | Num::ParamLen(_) => true,
            Num::Add(a, b) | Num::Sub(a, b) | Num::Mul(a, b) | Num::Div(a, b) | Num::Pow(a, b) => {
                a.uses_params() || b.uses_params()
            }
            Num::Neg(a) | Num::Abs(a) => a.uses_params(),
            Num::Max(all) | Num::Min(all) => all.iter().any(Num::uses_params),
        }
    }

    /// The value, or why it has none (a parameter that is not a number where one must be).
    pub(super) fn eval(&self, params: &[ParamValue<'_>]) -> Result<f64, String> {
        let value = match self {
            Num::Const(value) => *value,
            Num::Param(index) => match params.get(*index) {
                Some(ParamValue::Number(value)) => *value,
                Some(ParamValue::Null) => 0.0,
                Some(ParamValue::Text(text)) => number_of(text)
                    .ok_or_else(|| format!("parameter {} is used as a count and must be a number", index + 1))?,
                Some(ParamValue::Bytes(_)) => {
                    return Err(format!("parameter {} is used as a count and must be a number", index + 1));
                }
                None => return Err(format!("parameter {} is missing", index + 1)),
            },
            Num::ParamLen(index) => match params.get(*index) {
                Some(ParamValue::Text(text)) => text.len() as f64,
                // As PostgreSQL reads bytes sent as text: `\x` and two digits each.
                Some(ParamValue::Bytes(length)) => 2.0 + 2.0 * *length as f64,
                Some(ParamValue::Number(_)) => 24.0,
                Some(ParamValue::Null) => 0.0,
                None => return Err(format!("parameter {} is missing", index + 1)),
            },
            Num::Add(a, b) => a.eval(params)? + b.eval(params)?,
            Num::Sub(a, b) => a.eval(params)? - b.eval(params)?,
            Num::Mul(a, b) => a.eval(params)? * b.eval(params)?,
            Num::Div(a, b) => a.eval(params)? / b.eval(params)?,
            Num::Pow(a, b) => a.eval(params)?.powf(b.eval(params)?),
            Num::Neg(a) => -a.eval(params)?,
            Num::Abs(a) => a.eval(params)?.abs(),
            Num::Max(all) => {
                let mut most = f64::NEG_INFINITY;
                for n in all {
                    most = most.max(n.eval(params)?);
                }
                most
            }
            Num::Min(all) => {
                let mut least = f64::INFINITY;
                for n in all {
                    least = least.min(n.eval(params)?);
                }
                least
            }
        };
        // A division by zero, or a power past floats, is no bound: the largest there is.
        Ok(if value.is_nan() { f64::INFINITY } else { value })
    }
}

/// A text parameter read as a number, as the database would read it: plain decimal digits
/// with an optional sign, point and exponent, blanks around. Anything else is not a count.
pub(super) fn number_of(text: &str) -> Option<f64> {
    let text = text.trim();
    let plain = !text.is_empty()
        && text.chars().all(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | '.' | 'e' | 'E'))
        && text.chars().any(|c| c.is_ascii_digit());
    if plain { text.parse().ok() } else { None }
}
