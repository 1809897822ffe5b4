"""Unit tests for chalicelib.api.currency: what a valid symbol, rate and request body are."""

import json
import string
from collections.abc import Callable
from decimal import Decimal, Inexact, Rounded, localcontext
from fractions import Fraction

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from chalicelib.api.currency import MAX_BODY_BYTES, ClientError, format_rate, parse_body, parse_rate, parse_symbol

FIELDS = {"symbol", "rate"}


@st.composite
def valid_rates(draw: st.DrawFn) -> Decimal:
    """A Decimal in (0, 1e15) with at most 18 significant digits and exponent >= -18.

    coefficient < 10**digits and exponent <= 15 - digits keep the value below 1e15.
    The coefficient may end in zeros, so non-normalized forms such as 1.10 occur too.
    """
    digits = draw(st.integers(1, 18))
    coefficient = draw(st.integers(10 ** (digits - 1), 10**digits - 1))
    exponent = draw(st.integers(-18, 15 - digits))
    return Decimal(f"{coefficient}E{exponent}")


Spelling = Callable[[Decimal], str]

# Every way a client may spell one number: plain, scientific (both cases), Python's repr.
SPELLINGS = st.sampled_from([str, lambda d: f"{d:f}", lambda d: f"{d:e}", lambda d: f"{d:E}"])


def body(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def rate_from_json_number(text: str) -> Decimal:
    return parse_rate(
        parse_body(f'{{"symbol": "EUR", "rate": {text}}}'.encode(), required=FIELDS, allowed=FIELDS)["rate"]
    )


def code_of(call: Callable[..., object], *args: object) -> str:
    with pytest.raises(ClientError) as caught:
        call(*args)
    return caught.value.code


# --- rates: acceptance and round trip ---------------------------------------------------


@given(valid_rates(), SPELLINGS)
def test_rate_as_json_number_parses_exactly(value: Decimal, spell: Spelling) -> None:
    """A JSON number must never pass through a binary float, which would change the client's value."""
    text = spell(value)
    parsed = rate_from_json_number(text)
    assert isinstance(parsed, Decimal)
    assert parsed == value


@given(valid_rates(), SPELLINGS)
def test_rate_as_string_parses_exactly(value: Decimal, spell: Spelling) -> None:
    """Clients may quote the rate to keep it exact in their own JSON library."""
    assert parse_rate(spell(value)) == value


@given(valid_rates(), SPELLINGS)
def test_format_rate_is_plain_and_round_trips(value: Decimal, spell: Spelling) -> None:
    """The stored and displayed text must be plain notation and read back as the same value."""
    text = format_rate(parse_rate(spell(value)))
    assert "e" not in text.lower()
    assert parse_rate(text) == value
    assert format_rate(parse_rate(text)) == text


@given(valid_rates(), SPELLINGS, SPELLINGS)
def test_canonical_text_does_not_depend_on_spelling(value: Decimal, first: Spelling, second: Spelling) -> None:
    """1.1, 1.10 and 1.1E+0 are one rate, so they must be stored as one text (no trailing zeros)."""
    one = format_rate(parse_rate(first(value)))
    other = format_rate(parse_rate(second(value)))
    assert one == other
    if "." in one:
        assert not one.endswith(("0", "."))


def test_integral_rates_keep_plain_form() -> None:
    """normalize() alone would turn 100 into 1E+2; the API must still show 100."""
    assert format_rate(parse_rate("100")) == "100"
    assert format_rate(parse_rate("1E+2")) == "100"
    assert format_rate(parse_rate("100.00")) == "100"


def test_smallest_and_largest_accepted_rates() -> None:
    assert parse_rate("1e-18") == Decimal("0.000000000000000001")
    assert format_rate(parse_rate("1e-18")) == "0.000000000000000001"
    assert parse_rate("999999999999999.9") == Decimal("999999999999999.9")
    assert parse_rate("0.123456789012345678") == Decimal("0.123456789012345678")


def test_format_rate_strips_trailing_zeros_of_any_decimal() -> None:
    assert format_rate(Decimal("1.10")) == "1.1"


# --- rates: exactness at and beyond the limits -------------------------------------------


def within_limits(sent: Decimal) -> bool:
    """The documented limits, computed with integers: in (0, 1e15), <= 18 significant digits, none below 1e-18."""
    _, digits, exponent = sent.as_tuple()
    assert isinstance(exponent, int)
    coefficient = int("".join(map(str, digits)))
    if coefficient == 0:
        return False
    while coefficient % 10 == 0:
        coefficient, exponent = coefficient // 10, exponent + 1
    value = coefficient * Fraction(10) ** exponent
    return value < 10**15 and len(str(coefficient)) <= 18 and exponent >= -18


@st.composite
def wide_decimals(draw: st.DrawFn) -> Decimal:
    """Up to 40 digits (trailing zeros included), from far below 1e-18 to far above 1e15."""
    return Decimal(f"{draw(st.integers(0, 10**40))}E{draw(st.integers(-45, 25))}")


@st.composite
def barely_off(draw: st.DrawFn) -> Decimal:
    """A short rate (or the maximum) nudged in a digit beyond the 28th, which the default context rounds away."""
    base = draw(st.one_of(valid_rates(), st.just(Decimal("1e15"))))
    nudge = Decimal(f"{draw(st.sampled_from([-1, 1]))}E{-draw(st.integers(19, 45))}")
    with localcontext() as exact:
        exact.prec, exact.traps[Inexact] = 100, True
        return base + nudge


DECIMALS = st.one_of(wide_decimals(), barely_off())
# Plain digit strings as a client types them, and every spelling of the decimals above.
RATE_TEXTS = st.one_of(
    st.from_regex(r"[0-9]{1,35}(\.[0-9]{1,35})?", fullmatch=True),
    st.builds(lambda value, spell: spell(value), DECIMALS, SPELLINGS),
)


def assert_exact_or_refused(parse: Callable[[str], Decimal], text: str, sent: Decimal) -> None:
    """Within the limits: accepted as the very number sent. Beyond them: refused, never rounded into them."""
    try:
        result: Decimal | str = parse(text)
    except ClientError as error:
        result = error.code
    if not within_limits(sent):
        assert result == "invalid_rate", f"{text} is beyond the limits but was accepted as {result}"
        return
    assert isinstance(result, Decimal), f"{text} is within the limits but was refused: {result}"
    # A context that raises rather than rounds, so a zero comparison means the very same number.
    with localcontext() as exact:
        exact.traps[Inexact] = exact.traps[Rounded] = True
        assert Decimal(format_rate(result)).compare(sent) == 0, (text, format_rate(result))


@example("1.00000000000000000000000000001")
@example("999999999999999.99999999999999")
@example("999999999999999.999999999999999999999999999")
@example("0.1000000000000000000000000000000")
@example("0.0000000000000000019")
@given(RATE_TEXTS)
def test_an_accepted_rate_is_the_number_sent_and_others_are_refused(text: str) -> None:
    """The default 28-digit context must never round a rate into (or within) the limits."""
    assert_exact_or_refused(parse_rate, text, Decimal(text))


@given(DECIMALS, SPELLINGS)
def test_a_json_number_is_the_number_sent_or_refused(value: Decimal, spell: Spelling) -> None:
    assert_exact_or_refused(rate_from_json_number, spell(value), value)


@pytest.mark.parametrize("text", ["1.00000000000000000000000000001", "999999999999999.99999999999999"])
def test_rates_the_default_context_would_round_are_refused(text: str) -> None:
    """Before the fix these were stored as 1 and as 1000000000000000 (above the maximum)."""
    assert code_of(parse_rate, text) == "invalid_rate"
    assert code_of(rate_from_json_number, text) == "invalid_rate"


def test_trailing_zeros_beyond_28_digits_are_not_significant() -> None:
    assert format_rate(parse_rate("1.5" + "0" * 40)) == "1.5"
    assert format_rate(parse_rate("15" + "0" * 13 + "." + "0" * 30)) == "150000000000000"


def test_format_rate_keeps_every_digit_of_a_stored_rate() -> None:
    """DynamoDB keeps 38 digits; an item written outside the API must be shown as stored, not rounded."""
    stored = "12345678901234567890.123456789012345678"
    assert format_rate(Decimal(stored)) == stored
    assert format_rate(Decimal("1.0000000000000000000000000000000000001")) == "1.0000000000000000000000000000000000001"


# --- rates: rejections ------------------------------------------------------------------


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_json_literals_are_refused_in_the_body(literal: str) -> None:
    raw = f'{{"symbol": "EUR", "rate": {literal}}}'.encode()
    assert code_of(lambda: parse_body(raw, required=FIELDS, allowed=FIELDS)) == "invalid_rate"


@pytest.mark.parametrize(
    "value",
    [
        "NaN",
        "nan",
        "Infinity",
        "-Infinity",
        "inf",
        "1e400",
        "1e15",
        "1000000000000000",
        "0",
        "0.0",
        "0e5",
        "-1",
        "-0.5",
        "1.234567890123456789",  # 19 significant digits
        "1e-19",
        "0.0000000000000000001",
        " 1.5",
        "1.5 ",
        "1 5",
        "",
        "1,5",
        "0x10",
        "1_000",
        "+1",
        "1.",
        "\u0661",  # ARABIC-INDIC DIGIT ONE: Decimal() accepts it, the API must not
    ],
)
def test_invalid_rate_strings_are_refused(value: str) -> None:
    assert code_of(parse_rate, value) == "invalid_rate"


@pytest.mark.parametrize(
    "value",
    [
        0,
        -1,
        10**15,
        Decimal("1E+400"),
        Decimal("-2"),
        Decimal("NaN"),
        Decimal("Infinity"),
        Decimal("1.234567890123456789"),
    ],
)
def test_invalid_rate_numbers_are_refused(value: object) -> None:
    assert code_of(parse_rate, value) == "invalid_rate"


@pytest.mark.parametrize("value", [True, False, None, [], ["1.5"], {"rate": "1"}, 1.5, b"1.5"])
def test_rates_of_other_types_are_refused(value: object) -> None:
    """bool is an int subclass and float is inexact: neither may slip through as a rate."""
    assert code_of(parse_rate, value) == "invalid_rate"


@pytest.mark.parametrize("text", ["1e400", "0", "-1", "1.234567890123456789", "1e-19", "1000000000000000"])
def test_invalid_rates_as_json_numbers_are_refused(text: str) -> None:
    assert code_of(rate_from_json_number, text) == "invalid_rate"


@pytest.mark.parametrize(
    ("literal", "python"), [("true", True), ("false", False), ("null", None), ("[1]", [Decimal(1)])]
)
def test_non_numeric_json_rates_are_refused(literal: str, python: object) -> None:
    raw = f'{{"symbol": "EUR", "rate": {literal}}}'.encode()
    parsed = parse_body(raw, required=FIELDS, allowed=FIELDS)
    assert parsed["rate"] == python
    assert code_of(parse_rate, parsed["rate"]) == "invalid_rate"


# --- symbols ----------------------------------------------------------------------------


@given(st.text(alphabet=string.ascii_letters, min_size=3, max_size=3))
def test_three_ascii_letters_are_accepted_upper_cased(symbol: str) -> None:
    """eur and EUR must be the same item in the table."""
    assert parse_symbol(symbol) == symbol.upper()


@given(st.text(max_size=6))
def test_symbols_other_than_three_ascii_letters_are_refused(symbol: str) -> None:
    if len(symbol) == 3 and all(c in string.ascii_letters for c in symbol):
        assert parse_symbol(symbol) == symbol.upper()
    else:
        assert code_of(parse_symbol, symbol) == "invalid_symbol"


@pytest.mark.parametrize(
    "symbol",
    ["", "EU", "EURO", "E1R", "123", "ÉUR", "eür", "EUR\n", " EUR", "\u212aRW", "ＥＵＲ", "E-R"],  # noqa: RUF001
)
def test_invalid_symbol_texts_are_refused(symbol: str) -> None:
    assert code_of(parse_symbol, symbol) == "invalid_symbol"


@pytest.mark.parametrize("symbol", [None, 123, b"EUR", ["EUR"], True, {"symbol": "EUR"}])
def test_non_string_symbols_are_refused(symbol: object) -> None:
    assert code_of(parse_symbol, symbol) == "invalid_symbol"


# --- bodies -----------------------------------------------------------------------------


def parse(raw: bytes | None, required: set[str] = FIELDS) -> dict[str, object]:
    return parse_body(raw, required=required, allowed=FIELDS)


def test_valid_body_keeps_numbers_as_decimals() -> None:
    parsed = parse(b'{"symbol": "eur", "rate": 1.10}')
    assert parsed == {"symbol": "eur", "rate": Decimal("1.10")}
    assert isinstance(parsed["rate"], Decimal)


def test_body_limit_is_inclusive() -> None:
    """A body of exactly MAX_BODY_BYTES is allowed; one byte more is 413, not 400."""
    core = b'{"symbol": "EUR", "rate": "1.5"'
    at_limit = core + b" " * (MAX_BODY_BYTES - len(core) - 1) + b"}"
    assert len(at_limit) == MAX_BODY_BYTES
    assert parse(at_limit)["symbol"] == "EUR"
    with pytest.raises(ClientError) as caught:
        parse(at_limit + b" ")
    assert (caught.value.status, caught.value.code) == (413, "body_too_large")


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"{", "malformed_json"),
        (b"{'symbol': 'EUR'}", "malformed_json"),
        (b'{"symbol": "EUR", "rate": 1.5,}', "malformed_json"),
        (b"symbol=EUR&rate=1.5", "malformed_json"),
        (b'["EUR", "1.5"]', "invalid_body"),
        (b'"EUR"', "invalid_body"),
        (b"1.5", "invalid_body"),
        (b"null", "invalid_body"),
        (b'{"symbol": "EUR", "rate": "1", "extra": 1}', "unknown_field"),
        (b'{"symbol": "EUR"}', "missing_field"),
        (b"{}", "missing_field"),
        (b"", "missing_body"),
        (None, "missing_body"),
        (b"  \n\t ", "missing_body"),
        (b'{"symbol": "\xff\xfe"}', "malformed_json"),
        (b"\xc3\x28", "malformed_json"),
    ],
)
def test_body_errors_have_stable_codes(raw: bytes | None, code: str) -> None:
    with pytest.raises(ClientError) as caught:
        parse(raw)
    assert caught.value.code == code
    assert caught.value.status == 400


def test_unknown_field_is_reported_before_missing_field() -> None:
    """A typo ('rat') is best reported as the unknown field the client sent."""
    assert code_of(parse, b'{"symbol": "EUR", "rat": "1"}') == "unknown_field"


def test_required_subset_allows_optional_fields() -> None:
    assert parse(b'{"rate": "1"}', required={"rate"}) == {"rate": "1"}


@given(st.binary(max_size=5000))
def test_arbitrary_bytes_never_crash(raw: bytes) -> None:
    """Whatever a client sends must become a dict or a 4xx, never a 500."""
    status = None
    try:
        result: object = parse(raw)
    except ClientError as error:
        status = error.status
        result = None
    assert isinstance(result, dict) if status is None else 400 <= status <= 499


def test_deeply_nested_body_is_a_client_error() -> None:
    with pytest.raises(ClientError) as caught:
        parse(b"[" * 2000)
    assert 400 <= caught.value.status <= 499


@pytest.mark.parametrize("number", ["1e999999999999999999999", "1e-999999999999999999999"])
def test_number_with_huge_exponent_is_a_client_error(number: str) -> None:
    with pytest.raises(ClientError) as caught:
        parse(f'{{"symbol": "EUR", "rate": {number}}}'.encode())
    assert 400 <= caught.value.status <= 499
