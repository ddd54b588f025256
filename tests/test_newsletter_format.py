from newsletters.templatetags.newsletter_format import signed_pct


def test_signed_pct_never_shows_minus_zero():
    assert "-0" not in signed_pct(-0.04, 1)
    assert signed_pct(-0.04, 1) == signed_pct(0.04, 1) == signed_pct(0.0, 1)


def test_signed_pct_keeps_the_sign_of_a_real_move():
    assert signed_pct(-0.06, 1).startswith("-")
    assert signed_pct(0.06, 1).startswith("+")
    assert signed_pct(None) == "—"
