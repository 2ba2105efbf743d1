//! Token ranges: the part of the user's `mio::Token` space a component may use.

use core::ops::Range;

use mio::Token;

/// A range of `mio` tokens (`start..end`) that the user reserves for one component.
///
/// A component only ever registers sources with tokens inside its range, so the user's own
/// tokens never collide with it, and [`TokenRange::contains`] (or the component's
/// `handles`) tells the user's loop which component an event is for.
///
/// ```
/// use callosum_mio::TokenRange;
/// use mio::Token;
///
/// let range = TokenRange::new(100..200);
/// assert!(range.contains(Token(100)));
/// assert!(!range.contains(Token(200)));
/// assert_eq!(range.len(), 100);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TokenRange {
    start: usize,
    end: usize,
}

impl TokenRange {
    /// The tokens `range.start..range.end`. An empty or reversed range holds no token.
    ///
    /// ```
    /// use callosum_mio::TokenRange;
    ///
    /// assert!(TokenRange::new(5..5).is_empty());
    /// assert!(TokenRange::new(9..3).is_empty());
    /// ```
    pub fn new(range: Range<usize>) -> TokenRange {
        TokenRange {
            start: range.start,
            end: range.end.max(range.start),
        }
    }

    /// The first token of the range.
    pub fn start(&self) -> usize {
        self.start
    }

    /// One past the last token of the range.
    pub fn end(&self) -> usize {
        self.end
    }

    /// How many tokens the range holds.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// Whether the range holds no token.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Whether `token` is in the range.
    ///
    /// ```
    /// use callosum_mio::TokenRange;
    /// use mio::Token;
    ///
    /// assert!(TokenRange::new(1..3).contains(Token(2)));
    /// assert!(!TokenRange::new(1..3).contains(Token(0)));
    /// ```
    pub fn contains(&self, token: Token) -> bool {
        (self.start..self.end).contains(&token.0)
    }

    /// The token at `offset` from the start, if the range is that long.
    pub(crate) fn token(&self, offset: usize) -> Option<Token> {
        (offset < self.len()).then(|| Token(self.start + offset))
    }

    /// The offset of `token` from the start, if it is in the range.
    pub(crate) fn offset(&self, token: Token) -> Option<usize> {
        self.contains(token).then(|| token.0 - self.start)
    }
}

impl From<Range<usize>> for TokenRange {
    /// Same as [`TokenRange::new`].
    fn from(range: Range<usize>) -> TokenRange {
        TokenRange::new(range)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_and_tokens_stay_inside_the_range() {
        let range = TokenRange::new(10..13);
        assert_eq!(range.token(0), Some(Token(10)));
        assert_eq!(range.token(2), Some(Token(12)));
        assert_eq!(range.token(3), None);
        assert_eq!(range.offset(Token(12)), Some(2));
        assert_eq!(range.offset(Token(13)), None);
        assert_eq!(range.offset(Token(9)), None);
    }

    #[test]
    fn the_full_token_space_does_not_overflow() {
        let range = TokenRange::new(usize::MAX - 1..usize::MAX);
        assert_eq!(range.token(0), Some(Token(usize::MAX - 1)));
        assert_eq!(range.token(1), None);
    }
}
