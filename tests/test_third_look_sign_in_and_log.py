"""A kept provider session let back in after a sign-out without auth_time, and a decision log on a
blocking stdout pipe that hung the event loop instead of failing closed."""

from __future__ import annotations

from tests.browser.conftest import new_page, page  # noqa: F401
from tests.processes import full_pipe
from tests.test_second_look_sdk_and_portal import (  # noqa: F401
    ALEX,
    LOGIN_FORM,
    browser,
    provider_without_auth_time,
    sam_signed_in_and_out,
    sources,
)


def test_without_auth_time_a_kept_session_of_the_last_one_signed_in_is_not_let_back_in(
    page,  # noqa: F811
    provider_without_auth_time,  # noqa: F811
):
    """27ceaad: after a sign-out, a provider leaving out auth_time is trusted when its answer is
    "not the account that signed out here". But the tab remembers only the last *sign-out*: Sam
    signs out, Alex signs in (fine), then the tab is reloaded (Alex walks away, no sign-out; the
    provider keeps Alex's session). The next person asks for a fresh sign-in (prompt=login,
    max_age=0) and a provider ignoring it answers from Alex's kept session - not Sam's, so the
    page takes it and the next person works as Alex without anyone signing in. With auth_time
    the same answer is refused (`not-fresh`, Alex's sign-in is older than the request)."""
    provider, gateway = provider_without_auth_time
    sam_signed_in_and_out(page, f"{gateway.url}/portal/")

    page.click("#oidc-sign-in-button")
    page.wait_for_selector(LOGIN_FORM)
    page.click(LOGIN_FORM)  # Alex signs in, asked as the page asked
    page.wait_for_selector(ALEX)

    page.reload()  # Alex leaves without signing out; the provider keeps Alex's session
    page.wait_for_selector("body[data-ready=true]")
    provider.ignores_prompt = True
    page.click("#oidc-sign-in-button")  # the next person at the tab

    page.wait_for_selector(f"{ALEX}, #notice:has-text('without asking who you are')")
    assert page.is_hidden("#session"), "Alex's kept session was let back in"


def test_the_decision_log_on_a_blocking_stdout_pipe_fails_closed_after_the_stall_too():
    """65d4327: StreamSink promises that a stdout pipe taking nothing for `stall_s` is a log that
    cannot be written (the round's decisions fail closed), rather than the event loop - which the
    write runs on - waiting for it. That holds only for a pipe made non-blocking: stdout is
    blocking by default (a container runtime's pipe, a parent's), and there `os.write` of a round
    waits on a full pipe for as long as the reader stalls, holding every lookup of the process."""
    import os
    import threading

    from gateway.policy.decision_log import StreamSink

    read_end, stream = full_pipe()
    sink = StreamSink(stream, stall_s=0.2)
    outcome: list[BaseException | None] = []

    def write() -> None:
        try:
            sink.write('{"decision_id":"a"}\n' * 10)
            outcome.append(None)
        except BaseException as error:
            outcome.append(error)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    writer.join(3)
    stuck = writer.is_alive()
    os.set_blocking(read_end, False)
    try:  # release a stuck writer
        while writer.is_alive():
            try:
                os.read(read_end, 1 << 20)
            except BlockingIOError:
                writer.join(0.05)
    finally:
        writer.join(5)
        stream.close()
        os.close(read_end)
    assert not stuck, "the write waited on the full pipe past stall_s"
    assert outcome
    assert isinstance(outcome[0], TimeoutError)
