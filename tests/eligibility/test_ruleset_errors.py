"""A bad ruleset file stops loading with a message naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from eligibility import RulesetError, load_ruleset, parse_ruleset
from tests.eligibility.factories import DEFAULT_TOML, RULESETS_DIR, variant_of

# (edit to default.toml, text the error must contain)
CASES = [
    pytest.param(
        ("severe_risk_factor = 2 ", 'severe_risk_factor = "2" '),
        "weights.severe_risk_factor: Input should be a valid integer",
        id="wrong-type-string-for-int",
    ),
    pytest.param(
        ("step_up_score = 3 ", "step_up_score = true "),
        "thresholds.step_up_score: Input should be a valid integer",
        id="wrong-type-bool-for-int",
    ),
    pytest.param(
        ("accepts_antenatal = true\n", ""),
        "eligibility.accepts_antenatal: Field required",
        id="missing-key",
    ),
    pytest.param(
        ("relationship_concerns = [", "relationship_concernz = ["),
        "codes.relationship_concerns: Field required",
        id="missing-code-list",
    ),
    pytest.param(
        ("relationship_concerns = [", "relationship_concernz = ["),
        "codes.relationship_concernz: Extra inputs are not permitted",
        id="misspelt-key-is-not-ignored",
    ),
    pytest.param(
        ("[weights.risk_factors]\n", "[weights.risk_factors]\nnot_a_code = 2\n"),
        "weights.risk_factors.not_a_code: unknown code",
        id="unknown-code-in-weights",
    ),
    pytest.param(
        ("[weights.risk_factors]\n", "[weights.risk_factors]\nbonding_difficulties = 2\n"),
        "weights.risk_factors.bonding_difficulties: unknown code",
        id="concern-code-is-not-a-risk-factor",
    ),
    pytest.param(
        ("referrer_marked_urgent = 1\n", "referrer_marked_urgent = -1\n"),
        "weights.referrer_marked_urgent: Input should be greater than or equal to 0",
        id="negative-weight",
    ),
    pytest.param(
        ("age_limit_months = 24 ", "age_limit_months = 49 "),
        "eligibility.age_limit_months: Input should be less than or equal to 48",
        id="age-limit-over-48",
    ),
    pytest.param(
        ("age_limit_months = 24 ", "age_limit_months = 0 "),
        "eligibility.age_limit_months: Input should be greater than or equal to 1",
        id="age-limit-zero",
    ),
    pytest.param(
        ("catchment = []", 'catchment = ["OX4 1AA"]'),
        "eligibility.catchment[0]: Value error, 'OX4 1AA' is not a postcode area",
        id="full-postcode-is-not-a-catchment-entry",
    ),
    pytest.param(
        ('    "referrer_marked_urgent",\n]', '    "referrer_marked_urgent",\n    "full_moon",\n]'),
        "priority.urgent_when[3]: Input should be",
        id="unknown-priority-flag",
    ),
    pytest.param(
        ('raised_when = ["safeguarding_immediate_risk"]', "raised_when = []"),
        "safeguarding_alert.raised_when: List should have at least 1 item",
        id="alert-cannot-be-switched-off",
    ),
    pytest.param(
        (
            '    "other_relationship_concern",\n]',
            '    "other_relationship_concern",\n    "feeding_only",\n]',
        ),
        "codes.other_concerns[2]: duplicate code 'feeding_only'",
        id="code-in-two-lists",
    ),
    pytest.param(
        ('    "insecure_housing",\n]', '    "insecure_housing",\n    "referrer_marked_urgent",\n]'),
        "codes.other_risk_factors[7]: 'referrer_marked_urgent' is reserved for an indicator",
        id="risk-factor-named-like-an-indicator",
    ),
    pytest.param(
        ('feeding_only = "Feeding only"\n', 'feeding_only = "Feeding only"\nfeeding = "Feeding"\n'),
        "labels.feeding: unknown code",
        id="label-for-unknown-code",
    ),
    pytest.param(
        ('    "domestic_abuse",\n', '    "domestic_abuze",\n'),
        "codes.severe_risk_factors[1]: 'domestic_abuze' is probably misspelt: "
        "labels has 'domestic_abuse'",
        id="typo-in-a-code-list-is-reported-at-the-list",
    ),
    pytest.param(
        ('    "feeding_only",\n', '    "feding_only",\n'),
        "codes.other_concerns[2]: 'feding_only' is probably misspelt: labels has 'feeding_only'",
        id="typo-in-a-concern-list-is-reported-at-the-list",
    ),
    pytest.param(
        ('timezone = "Europe/London"', 'timezone = "Europe/Oxford"'),
        "ruleset.timezone: unknown time zone 'Europe/Oxford'",
        id="unknown-time-zone",
    ),
    pytest.param(
        ("moderate_concern_weeks = 4\n", "moderate_concern_weeks = 12\n"),
        "thresholds.moderate_concern_weeks: must be less than thresholds.enduring_concern_weeks",
        id="duration-bands-overlap",
    ),
    pytest.param(
        (
            'signposts = ["camhs", "early_help", "health_visiting"]',
            'signposts = ["camhs", "camhs_typo"]',
        ),
        "reasons.AGE_OVER_LIMIT.signposts[1]: unknown service 'camhs_typo'",
        id="unknown-signpost-service",
    ),
    pytest.param(
        ("[reasons.OUT_OF_CATCHMENT]", "[reasons.OUT_OF_AREA]"),
        "reasons.OUT_OF_CATCHMENT: Field required",
        id="missing-reason-text",
    ),
    pytest.param(
        ("age limit of {age_limit_months} months.", "age limit of {age_limit} months."),
        "reasons.AGE_OVER_LIMIT.message: unknown placeholder {age_limit}",
        id="unknown-placeholder",
    ),
    pytest.param(
        ("age limit of {age_limit_months} months.", "age limit of {score} months."),
        "reasons.AGE_OVER_LIMIT.message: unknown placeholder {score}",
        id="score-only-in-score-reasons",
    ),
    pytest.param(
        ("age limit of {age_limit_months} months.", "age limit of {age_limit_months months."),
        "reasons.AGE_OVER_LIMIT.message: malformed placeholder",
        id="malformed-placeholder",
    ),
    pytest.param(
        (
            'url = "https://www.gov.uk/find-local-council"\n\n[[services]]\nid = "gp"',
            '\n[[services]]\nid = "gp"',
        ),
        "services[2]: needs a url or an email",
        id="service-without-url-or-email",
    ),
    pytest.param(
        ('id = "gp"', 'id = "camhs"'),
        "services[3].id: duplicate service id 'camhs'",
        id="duplicate-service-id",
    ),
    pytest.param(
        ('url = "https://www.nhs.uk/pregnancy/"', 'url = "www.nhs.uk/pregnancy/"'),
        "services[7].url: String should match pattern",
        id="url-without-scheme",
    ),
]


@pytest.mark.parametrize(("edit", "expected"), CASES)
def test_bad_file_names_the_key(tmp_path: Path, edit: tuple[str, str], expected: str) -> None:
    path = variant_of(DEFAULT_TOML, tmp_path, edit)
    with pytest.raises(RulesetError) as caught:
        load_ruleset(path)
    message = str(caught.value)
    assert expected in message
    assert str(path) in message


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = variant_of(
        DEFAULT_TOML,
        tmp_path,
        ("severe_risk_factor = 2 ", 'severe_risk_factor = "2" '),
        ("accepts_antenatal = true\n", ""),
    )
    with pytest.raises(RulesetError) as caught:
        load_ruleset(path)
    assert "weights.severe_risk_factor" in str(caught.value)
    assert "eligibility.accepts_antenatal" in str(caught.value)


def test_age_limit_of_48_is_allowed(tmp_path: Path) -> None:
    path = variant_of(DEFAULT_TOML, tmp_path, ("age_limit_months = 24 ", "age_limit_months = 48 "))
    assert load_ruleset(path).age_limit_months == 48


def test_catchment_entries_are_normalised(tmp_path: Path) -> None:
    path = variant_of(
        DEFAULT_TOML, tmp_path, ("catchment = []", 'catchment = [" ox4  1 ", "sw1a"]')
    )
    assert load_ruleset(path).catchment == ("OX4 1", "SW1A")


def test_invalid_toml(tmp_path: Path) -> None:
    path = variant_of(DEFAULT_TOML, tmp_path, ("[thresholds]", "[thresholds"))
    with pytest.raises(RulesetError, match="not valid TOML"):
        load_ruleset(path)


def test_not_utf8() -> None:
    with pytest.raises(RulesetError, match="memory.toml: not UTF-8"):
        parse_ruleset(b"id = '\xff'", source="memory.toml")


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.toml"
    with pytest.raises(RulesetError, match="cannot read ruleset file") as caught:
        load_ruleset(path)
    assert str(path) in str(caught.value)


def test_empty_file_names_every_top_level_table() -> None:
    with pytest.raises(RulesetError) as caught:
        parse_ruleset(b"", source="empty.toml")
    for table in ("ruleset", "eligibility", "codes", "weights", "thresholds", "reasons"):
        assert f" {table}: Field required" in str(caught.value)


def test_test_rulesets_load() -> None:
    for path in sorted(RULESETS_DIR.glob("*.toml")):
        assert load_ruleset(path).id.startswith("test-")


def test_typo_in_a_code_list_is_not_blamed_on_its_label(tmp_path: Path) -> None:
    path = variant_of(
        DEFAULT_TOML, tmp_path, ('    "domestic_abuse",\n', '    "domestic_abuze",\n')
    )
    with pytest.raises(RulesetError) as caught:
        load_ruleset(path)
    assert "labels.domestic_abuse" not in str(caught.value)


def test_typo_in_a_risk_factor_list_with_a_weight_is_reported_at_the_list(tmp_path: Path) -> None:
    path = variant_of(
        DEFAULT_TOML,
        tmp_path,
        ('    "social_isolation",\n', '    "social_isolaton",\n'),
        ('social_isolation = "', 'social_isolaton = "'),  # the label follows the typo
        ("[weights.risk_factors]\n", "[weights.risk_factors]\nsocial_isolation = 2\n"),
    )
    with pytest.raises(RulesetError) as caught:
        load_ruleset(path)
    assert str(caught.value).endswith(
        "codes.other_risk_factors[4]: 'social_isolaton' is probably misspelt: "
        "weights.risk_factors has 'social_isolation'"
    )


def test_a_label_for_no_code_at_all_is_still_reported_at_the_label(tmp_path: Path) -> None:
    path = variant_of(DEFAULT_TOML, tmp_path, ("[labels]\n", '[labels]\nbreastfeeding = "B"\n'))
    with pytest.raises(RulesetError, match=r"labels\.breastfeeding: unknown code"):
        load_ruleset(path)


def test_every_problem_is_on_one_line(tmp_path: Path) -> None:
    path = variant_of(
        DEFAULT_TOML,
        tmp_path,
        ("severe_risk_factor = 2 ", 'severe_risk_factor = "2" '),
        ("accepts_antenatal = true\n", ""),
    )
    with pytest.raises(RulesetError) as caught:
        load_ruleset(path)
    assert str(caught.value) == (
        f"{path}: invalid ruleset: eligibility.accepts_antenatal: Field required; "
        "weights.severe_risk_factor: Input should be a valid integer"
    )
