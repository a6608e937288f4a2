//! Sets of address ranges: sorted, disjoint, half-open `[start, end)` pairs.

/// A sorted list of disjoint, non-adjacent half-open ranges.
pub(crate) type Ranges = Vec<(u64, u64)>;

/// Sorts and merges overlapping or adjacent ranges.
pub(crate) fn normalize(mut v: Ranges) -> Ranges {
    v.retain(|r| r.0 < r.1);
    v.sort_unstable();
    let mut out: Ranges = Vec::with_capacity(v.len());
    for r in v {
        match out.last_mut() {
            Some(last) if r.0 <= last.1 => last.1 = last.1.max(r.1),
            _ => out.push(r),
        }
    }
    out
}

/// `a ∩ b`.
pub(crate) fn intersect(a: &[(u64, u64)], b: &[(u64, u64)]) -> Ranges {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        let s = a[i].0.max(b[j].0);
        let e = a[i].1.min(b[j].1);
        if s < e {
            out.push((s, e));
        }
        if a[i].1 < b[j].1 {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// `a − b`.
pub(crate) fn subtract(a: &[(u64, u64)], b: &[(u64, u64)]) -> Ranges {
    let mut out = Vec::new();
    let mut j = 0;
    for &(mut s, e) in a {
        while j < b.len() && b[j].1 <= s {
            j += 1;
        }
        let mut k = j;
        while k < b.len() && b[k].0 < e {
            if b[k].0 > s {
                out.push((s, b[k].0));
            }
            s = s.max(b[k].1);
            k += 1;
        }
        if s < e {
            out.push((s, e));
        }
    }
    out
}

/// Total length.
pub(crate) fn total(a: &[(u64, u64)]) -> u64 {
    a.iter().map(|r| r.1 - r.0).sum()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn set_operations() {
        let a = normalize(vec![(10, 20), (0, 5), (18, 30), (40, 50)]);
        assert_eq!(a, vec![(0, 5), (10, 30), (40, 50)]);
        let b = vec![(3, 12), (25, 45)];
        assert_eq!(
            intersect(&a, &b),
            vec![(3, 5), (10, 12), (25, 30), (40, 45)]
        );
        assert_eq!(subtract(&a, &b), vec![(0, 3), (12, 25), (45, 50)]);
        assert_eq!(subtract(&a, &[]), a);
        assert_eq!(total(&a), 5 + 20 + 10);
    }
}
