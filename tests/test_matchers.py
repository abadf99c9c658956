"""Matchers mean what they mean in Alertmanager: the real amtool is the referee."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from remediator.policy.matchers import Matcher, MatcherError, MatchType, parse_matcher
from tests.support.own_process import json_printed_by
from tests.support.services import missing_service

# Each of these is a routing matcher in the Alertmanager config below and a policy matcher here.
CORPUS = [
    'alertname="HighErrorRate"',
    "alertname=HighErrorRate",
    'alertname=~"High"',
    'alertname=~"High.*"',
    'alertname=~"(?i)higherrorrate"',
    'team!~"a|b"',
    'team=~"a|b"',
    'team=""',
    'team!=""',
    'team=~""',
    'team=~".+"',
    'severity!="info"',
    'namespace=~"prod-.*"',
    'namespace!~"kube-.*|default"',
    'pod=~"api-[a-z0-9]+-[a-z0-9]{5}"',
    r'code=~"5\\d\\d"',
    r'code=~"\\d+"',
    'code=~"[[:digit:]]+"',
    'desc="say \\"hi\\""',
    'desc=~"a\\\\b"',
    'desc="C:\\\\dir"',
    'name=~"[[:alpha:]_]+"',
    'name=~"é.*"',
    'name=~"(?i)ÉTÉ"',
    'name=~"x(?i:Y)z"',
    'name=~"[\\w-]+"',
    'name=~"[^[:space:]]+"',
    'name=~".*\\bworld"',
    'name=~"hello\\z"',
    'desc=~"[]x]+"',
    "  spaced  =  value  ",
    # Refused by the hand translation to Python's `re` that RE2 replaced; Go and RE2 take them.
    'name=~"\\\\pL+"',
    'desc=~"\\\\Qa\\\\b\\\\E"',
    'name=~"(?U)x.+z"',
    'name=~"x(?i)yZ"',
    'name=~"[[:^alpha:]]+"',
]

LABEL_SETS: list[dict[str, str]] = [
    {},
    {"alertname": "HighErrorRate"},
    {"alertname": "High"},
    {"alertname": "HighErrorRates", "team": "a"},
    {"alertname": "higherrorrate", "team": "b"},
    {"team": "ab"},
    {"team": "c", "severity": "info"},
    {"severity": "warning", "namespace": "prod-api"},
    {"namespace": "prod-"},
    {"namespace": "staging-prod-api"},
    {"namespace": "kube-system"},
    {"namespace": "default"},
    {"namespace": "defaults"},
    {"pod": "api-7d9f8b6c4-x2k9p"},
    {"pod": "api-7d9f8b6c4-x2k9"},
    {"code": "503"},
    {"code": "5033"},
    {"code": "٥٠٣"},
    {"desc": 'say "hi"'},
    {"desc": "a\\b"},
    {"desc": "C:\\dir"},
    {"name": "hello_world"},
    {"name": "été"},
    {"name": "éte"},
    {"name": "ÉtÉ"},
    {"name": "xYz"},
    {"name": "xyz"},
    {"name": "XYz"},
    {"name": "a-b_c"},
    {"name": "hello world"},
    {"name": "héllo_world"},
    {"name": "hello"},
    {"desc": "]x]"},
    {"desc": "a"},
    {"spaced": "value"},
    {"spaced": "  value"},
    {"name": "été_2"},
    {"name": "42"},
]


def amtool_config(directory: Path) -> Path:
    routes = [
        {"receiver": f"m{index}", "matchers": [matcher], "continue": True}
        for index, matcher in enumerate(CORPUS)
    ]
    receivers = [{"name": "none"}] + [{"name": f"m{index}"} for index in range(len(CORPUS))]
    config = {"route": {"receiver": "none", "routes": routes}, "receivers": receivers}
    path = directory / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def amtool_matches(amtool: str, config: Path, labels: dict[str, str]) -> set[str]:
    """The corpus matchers whose route amtool says these labels reach."""
    arguments = [f'{name}="{_go_quote(value)}"' for name, value in labels.items()]
    answer = subprocess.run(
        [amtool, "config", "routes", "test", f"--config.file={config}", *arguments],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    receivers = set(answer.stdout.strip().split(",")) - {"none"}
    return {CORPUS[int(receiver.removeprefix("m"))] for receiver in receivers}


def _go_quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


@pytest.fixture(scope="module")
def amtool() -> str:
    found = shutil.which("amtool")
    if found is None:
        missing_service("amtool", "install it with `apt-get install prometheus-alertmanager`")
    assert found is not None
    return found


@pytest.mark.parametrize(
    "labels", LABEL_SETS, ids=[",".join(f"{k}={v}" for k, v in s.items()) for s in LABEL_SETS]
)
def test_our_matchers_agree_with_amtool(
    amtool: str, tmp_path: Path, labels: dict[str, str]
) -> None:
    config = amtool_config(tmp_path)
    ours = {text for text in CORPUS if parse_matcher(text).matches(labels)}
    assert ours == amtool_matches(amtool, config, labels)


def test_the_corpus_exercises_both_outcomes_of_every_matcher() -> None:
    """A corpus where a matcher never fails (or never holds) would prove nothing about it."""
    for text in CORPUS:
        outcomes = {parse_matcher(text).matches(labels) for labels in LABEL_SETS}
        assert outcomes == {True, False}, text


# (regex, whether Go's regexp takes it): the first rows were refused by the hand translation to
# Python's `re` that RE2 replaced, `a++` was taken (and meant a possessive repetition).
VERDICTS = [
    ("\\pL+", True),
    ("\\PL", True),
    ("\\p{Greek}+", True),
    ("\\Qa.b\\E", True),
    ("(?U)a+", True),
    ("x(?i)y", True),
    ("[[:^alpha:]]", True),
    ("a++", False),
    ("a**", False),
    ("a{2}{3}", False),
    ("\\C", False),  # RE2 alone knows it (one byte): refused to agree with Go
    ("\\Q\\C\\E", True),
    ("a)|(b", True),  # anchored as ^(?:a)|(b)$ by both
    ("(?P<n>a)", True),
    ("[\\d-z]", True),
    ("\\Z", False),
    ("(?=x)x", False),
    ("(?<=x)x", False),
    ("(x)\\1", False),
    ("a{1001}", False),
    ("(?x)a b", False),
    ("(?#c)a", False),
    ("\\e", False),
    ("[z-a]", False),
    ("\\p{Foo}", False),
    ("(", False),
]


def amtool_accepts(amtool: str, directory: Path, matcher: str) -> bool:
    config = {
        "route": {"receiver": "r", "routes": [{"receiver": "r", "matchers": [matcher]}]},
        "receivers": [{"name": "r"}],
    }
    path = directory / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    answer = subprocess.run(
        [amtool, "check-config", str(path)], capture_output=True, text=True, timeout=30
    )
    assert answer.returncode == 0 or "error parsing regexp" in answer.stdout + answer.stderr
    return answer.returncode == 0


def accepts(matcher: str) -> bool:
    try:
        parse_matcher(matcher)
    except MatcherError:
        return False
    return True


@pytest.mark.parametrize(("regex", "go_takes_it"), VERDICTS, ids=[v[0] for v in VERDICTS])
def test_a_regex_is_refused_exactly_when_amtool_refuses_it(
    amtool: str, tmp_path: Path, regex: str, go_takes_it: bool
) -> None:
    matcher = f'name=~"{_go_quote(regex)}"'
    assert (accepts(matcher), amtool_accepts(amtool, tmp_path, matcher)) == (go_takes_it,) * 2


CATASTROPHIC = """
import json
from remediator.policy.matchers import parse_matcher

matcher = parse_matcher('deployment=~"([a-z0-9]+-?)+"')
answers = {}
for length in (28, 10_000, 100_000):
    almost, pairs = "a" * (length - 1), "ab-" * (length // 3)
    labels = [almost + "!", almost + "b", pairs, pairs + "-"]
    answers[length] = [matcher.matches({"deployment": value}) for value in labels]
print(json.dumps(answers))
"""


def test_a_catastrophic_regex_matches_a_long_label_in_linear_time() -> None:
    """`([a-z0-9]+-?)+` took 31.8 s on 28 characters when backtracking, doubling with each one."""
    answers = json_printed_by(CATASTROPHIC, what="matching a 28 to 100,000 character label")
    expected = [False, True, True, False]
    assert answers == {"28": expected, "10000": expected, "100000": expected}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('alertname="X"', Matcher("alertname", MatchType.EQUAL, "X")),
        ("alertname = X ", Matcher("alertname", MatchType.EQUAL, "X")),
        ('a!~"x|y"', Matcher("a", MatchType.NOT_REGEX, "x|y")),
        ('a=~"\\\\d"', Matcher("a", MatchType.REGEX, "\\d")),
        ('a="\\n"', Matcher("a", MatchType.EQUAL, "\n")),
        ('a="\\t"', Matcher("a", MatchType.EQUAL, "\\t")),
        ('a=""', Matcher("a", MatchType.EQUAL, "")),
        ("a=", Matcher("a", MatchType.EQUAL, "")),
        ('a="b=c"', Matcher("a", MatchType.EQUAL, "b=c")),
        ("_a:b=1", Matcher("_a:b", MatchType.EQUAL, "1")),
    ],
)
def test_parsing_follows_alertmanager(text: str, expected: Matcher) -> None:
    assert parse_matcher(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("alertname", "expected name, one of = != =~ !~, then a value"),
        ('1abc="x"', "a label name starts with a letter, '_' or ':'"),
        ('a="x', "lacks its closing double quote"),
        ('a="x"y"', "unescaped double quote"),
        ('a=x"', "unescaped double quote"),
        ('a=~"("', "invalid regular expression '('"),
        ('a=~"(?=x)x"', "invalid perl operator: (?="),
        ('a=~"(x)\\\\1"', "invalid escape sequence: \\1"),
        ('a=~"[[:nope:]]"', "invalid character class range: [:nope:]"),
        ('a=~"a++"', "bad repetition operator: ++"),
        ('a=~"\\\\C"', "invalid escape sequence: \\C"),
        ('a=~"\\\\pL{1000}"', "over RE2's 8 MiB; use smaller repetition counts"),
    ],
)
def test_a_bad_matcher_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(MatcherError, match=None) as raised:
        parse_matcher(text)
    assert message in str(raised.value)


label_names = st.from_regex(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,10}", fullmatch=True)
values = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=20)


@given(label_names, st.sampled_from(list(MatchType)), values)
def test_printing_then_parsing_gives_the_same_matcher(
    name: str, kind: MatchType, value: str
) -> None:
    try:
        matcher = Matcher(name, kind, value)
    except MatcherError:
        return  # a value that is no valid regex cannot make a regex matcher
    assert parse_matcher(str(matcher)) == matcher


@given(label_names, values)
def test_an_equality_matcher_is_a_regex_of_its_escaped_value(name: str, value: str) -> None:
    equal = Matcher(name, MatchType.EQUAL, value)
    regex = Matcher(name, MatchType.REGEX, re.escape(value))
    for labels in ({name: value}, {name: value + "x"}, {}):
        assert equal.matches(labels) == regex.matches(labels)


@given(label_names, st.sampled_from(list(MatchType)), values, values)
def test_negation_is_exactly_the_opposite(
    name: str, kind: MatchType, value: str, label: str
) -> None:
    opposite = {
        MatchType.EQUAL: MatchType.NOT_EQUAL,
        MatchType.NOT_EQUAL: MatchType.EQUAL,
        MatchType.REGEX: MatchType.NOT_REGEX,
        MatchType.NOT_REGEX: MatchType.REGEX,
    }
    try:
        matcher = Matcher(name, kind, value)
    except MatcherError:
        return
    inverse = Matcher(name, opposite[kind], value)
    assert matcher.matches({name: label}) != inverse.matches({name: label})


@given(st.text(max_size=30))
def test_parsing_any_text_either_succeeds_or_raises_matcher_error(text: str) -> None:
    with contextlib.suppress(MatcherError):
        parse_matcher(text)
