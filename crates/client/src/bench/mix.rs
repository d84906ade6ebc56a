//! The operation mix (`--mix read:80,write:20`): which operations a run
//! sends, in what proportions.

use std::fmt;
use std::str::FromStr;

use super::rng::Rng;
use crate::protocol::Op;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix {
    /// Each operation with its weight, in the order given; weights > 0.
    parts: Vec<(Op, u64)>,
    total: u64,
}

impl Mix {
    /// The operations of the mix, each once.
    pub fn ops(&self) -> impl Iterator<Item = Op> + '_ {
        self.parts.iter().map(|&(op, _)| op)
    }

    /// One operation, chosen with the mix's proportions.
    pub fn pick(&self, rng: &mut Rng) -> Op {
        if let [(op, _)] = self.parts[..] {
            return op;
        }
        let mut ticket = rng.below(self.total);
        for &(op, weight) in &self.parts {
            if ticket < weight {
                return op;
            }
            ticket -= weight;
        }
        // Unreachable: the ticket is below the sum of the weights.
        self.parts[self.parts.len() - 1].0
    }
}

impl FromStr for Mix {
    type Err = String;

    /// `op[:weight],...`; an operation without a weight weighs 1.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut parts: Vec<(Op, u64)> = Vec::new();
        for item in text.split(',').map(str::trim) {
            let (name, weight) = match item.split_once(':') {
                Some((name, weight)) => {
                    let weight = weight.trim().parse::<u32>().map_err(|_| {
                        format!("weight '{weight}' of '{name}' is not a whole number")
                    })?;
                    (name.trim(), u64::from(weight))
                }
                None => (item, 1),
            };
            if name.is_empty() {
                return Err(format!("'{text}' has an empty operation"));
            }
            let op: Op = name.parse()?;
            if parts.iter().any(|&(seen, _)| seen == op) {
                return Err(format!("operation '{op}' is given twice"));
            }
            // A zero weight names an operation that never runs: drop it.
            if weight > 0 {
                parts.push((op, weight));
            }
        }
        let total = parts.iter().map(|&(_, w)| w).sum();
        if total == 0 {
            return Err(format!("'{text}' has no operation with a weight above 0"));
        }
        Ok(Mix { parts, total })
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let [(op, _)] = self.parts[..] {
            return write!(f, "{op}");
        }
        for (i, (op, weight)) in self.parts.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{op}:{weight}")?;
        }
        Ok(())
    }
}
