"""input() and getpass() over the stdin channel, against a real kernel process."""

from __future__ import annotations

import time

from jupyter_client.blocking.client import BlockingKernelClient

from tests.kernel_helpers import TIMEOUT, collect_until_idle, execute, get_input_request, get_reply


def test_input_request_carries_prompt_and_parent(kc: BlockingKernelClient) -> None:
    msg_id = kc.execute("name = input('Your name: ')\nprint('hello', name)", allow_stdin=True)
    request = get_input_request(kc)
    assert request["msg_type"] == "input_request"
    assert request["content"] == {"prompt": "Your name: ", "password": False}
    assert request["parent_header"]["msg_id"] == msg_id
    kc.input("Ada")
    messages = collect_until_idle(kc, msg_id)
    reply = get_reply(kc, msg_id)
    assert reply["content"]["status"] == "ok"
    text = "".join(m["content"]["text"] for m in messages if m["msg_type"] == "stream")
    assert text == "hello Ada\n"


def test_input_value_is_returned_verbatim(kc: BlockingKernelClient) -> None:
    msg_id = kc.execute("value = input()", allow_stdin=True)
    request = get_input_request(kc)
    assert request["content"]["prompt"] == ""
    kc.input("  spaces, ünïcödé and 'quotes'  ")
    assert get_reply(kc, msg_id)["content"]["status"] == "ok"
    run = execute(kc, "value")
    assert run.of_type("execute_result")[0]["content"]["data"]["text/plain"] == repr(
        "  spaces, ünïcödé and 'quotes'  "
    )


def test_output_before_input_is_flushed_first(kc: BlockingKernelClient) -> None:
    msg_id = kc.execute("print('before the prompt', end='')\nx = input('> ')", allow_stdin=True)
    get_input_request(kc)
    # the text printed before input() was sent before the input request
    seen = []
    while not seen:
        message = kc.get_iopub_msg(timeout=30)
        if message["parent_header"].get("msg_id") == msg_id and message["msg_type"] == "stream":
            seen.append(message["content"]["text"])
    assert seen == ["before the prompt"]
    kc.input("")
    assert get_reply(kc, msg_id)["content"]["status"] == "ok"


def test_getpass_sets_password(kc: BlockingKernelClient) -> None:
    msg_id = kc.execute("import getpass\nsecret = getpass.getpass('Secret: ')", allow_stdin=True)
    request = get_input_request(kc)
    assert request["content"] == {"prompt": "Secret: ", "password": True}
    assert request["parent_header"]["msg_id"] == msg_id
    kc.input("hunter2")
    assert get_reply(kc, msg_id)["content"]["status"] == "ok"
    run = execute(kc, "len(secret), secret == 'hunter2'")
    assert run.of_type("execute_result")[0]["content"]["data"]["text/plain"] == "(7, True)"


def test_several_inputs_in_one_cell(kc: BlockingKernelClient) -> None:
    msg_id = kc.execute("a = input('a? ')\nb = input('b? ')\nprint(a + b)", allow_stdin=True)
    for prompt, value in (("a? ", "foo"), ("b? ", "bar")):
        request = get_input_request(kc)
        assert request["content"]["prompt"] == prompt
        kc.input(value)
    messages = collect_until_idle(kc, msg_id)
    assert get_reply(kc, msg_id)["content"]["status"] == "ok"
    assert [m["content"]["text"] for m in messages if m["msg_type"] == "stream"] == ["foobar\n"]


def test_input_from_a_thread_goes_to_its_cell(kc: BlockingKernelClient) -> None:
    msg_id = kc.execute(
        "import threading\n"
        "got = []\n"
        "t = threading.Thread(target=lambda: got.append(input('thread? ')))\n"
        "t.start(); t.join()\n"
        "print(got)",
        allow_stdin=True,
    )
    request = get_input_request(kc)
    assert request["content"]["prompt"] == "thread? "
    assert request["parent_header"]["msg_id"] == msg_id
    kc.input("from thread")
    messages = collect_until_idle(kc, msg_id)
    assert [m["content"]["text"] for m in messages if m["msg_type"] == "stream"] == ["['from thread']\n"]


def test_stray_input_reply_is_ignored(kc: BlockingKernelClient) -> None:
    kc.input("nobody asked")
    # The stdin and shell channels are separate connections, with no order between
    # them: wait until the kernel has seen (and dropped) the stray reply.
    deadline = time.monotonic() + TIMEOUT
    while execute(kc, "print(get_ipython().kernel.stdin.ignored_replies)").stdout != "1\n":
        assert time.monotonic() < deadline, "the stray input_reply never reached the kernel"
    msg_id = kc.execute("v = input('real? ')", allow_stdin=True)
    request = get_input_request(kc)
    assert request["content"]["prompt"] == "real? "
    kc.input("real answer")
    assert get_reply(kc, msg_id)["content"]["status"] == "ok"
    run = execute(kc, "v")
    assert run.of_type("execute_result")[0]["content"]["data"]["text/plain"] == "'real answer'"
