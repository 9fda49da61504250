"""`banglaocr review`: a local web page to check the model's readings; corrections become a data set."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated

import typer

from banglaocr.cli.common import (BatchSizeOption, DeviceOption, PrecisionOption, console, err_console,
                                  load_quietly, progress_bar, user_errors)

LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "::1", "[::1]"]


def review(
    input_path: Annotated[Path, typer.Argument(metavar="INPUT", show_default=False,
                                               help="Predictions .jsonl of `predict --format jsonl`, a `segment` "
                                                    "output folder (layout.json), or a folder of word crops.")],
    out: Annotated[Path, typer.Option("--out", "-o", metavar="DATASET",
                                      help="Data set folder the corrections go into (new, or one an earlier "
                                           "review of INPUT wrote: resumed).")],
    model: Annotated[str | None, typer.Option(
        "--model", "-m", metavar="MODEL",
        help="The model that reads the crops of a folder or segment output (default: tiny), and that the "
             "printed train command adapts; for predictions, the one predict's marker names.")] = None,
    batch_size: BatchSizeOption = 16,
    precision: PrecisionOption = "auto",
    device: DeviceOption = None,
    host: Annotated[str, typer.Option("--host", metavar="HOST",
                                      help="Address to listen on; anything but loopback lets others on the "
                                           "network read and change the data set.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, metavar="N",
                                      help="Port (0 = any free port; the URL is printed).")] = 8765,
    open_browser: Annotated[bool, typer.Option("--open", help="Open the page in the default browser (without "
                                                              "it, none is opened).")] = False,
) -> None:
    """Review the readings word by word in a local web page; every correction is saved into an imagefolder
    data set that train and eval read.

    The page shows the least confident words first: type the correction and press Enter (saved at once,
    then the next word), Escape or Alt+S skips, Alt+I marks a word illegible. Restarting resumes. Ctrl-C
    stops the server and prints the `banglaocr train` command that adapts the model to the reviewed words.

    Example: banglaocr review predictions.jsonl --out reviewed
    """
    with user_errors():
        from banglaocr.review.app import create_app, input_id, new_session
        from banglaocr.review.command import adapt_command
        from banglaocr.review.dataset import open_dataset
        from banglaocr.review.inputs import load_input

        loaded_input = load_input(input_path)
        dataset = open_dataset(out, input_id(loaded_input))  # refused before a model is loaded
        loaded_input, reader = _with_readings(loaded_input, model, batch_size, precision, device)
        command = adapt_command(reader, out.expanduser().resolve(), _settings(reader))
        session = new_session(loaded_input, dataset, command)
        app = create_app(session, allowed_hosts=LOOPBACK_HOSTS if _is_loopback(host) else ["*"])
        if not _is_loopback(host):
            err_console.print(f"[yellow]warning: listening on {host}, not loopback: anyone who can reach it can "
                              "see the crops and change the data set[/]", highlight=False)
        _serve(app, host, port, session, open_browser)
        _summary(session)


def _with_readings(review_input, model: str | None, batch_size: int, precision: str, device: str | None):
    """The input with every crop read (`--model`, default tiny), and the name of the model of its readings."""
    from banglaocr.errors import UserError
    from banglaocr.infer import read_images
    from banglaocr.review.inputs import read_items

    if review_input.kind == "predictions":
        reader = model or review_input.model
        if reader is None:
            raise UserError(f"INPUT {review_input.path} has no marker of banglaocr predict naming its model: give "
                            "--model, the model that wrote these predictions (the train command adapts it)")
        if any(item.reading is None and item.error is None for item in review_input.items):
            raise UserError(f"INPUT {review_input.path}: a row has neither a prediction nor an error")
        return review_input, reader
    reader = model or "tiny"
    todo = sum(item.reading is None and item.error is None for item in review_input.items)
    loaded, settings = load_quietly(reader, None, precision, device)
    with progress_bar(todo, "reading", show=True) as advance:
        def read(images):
            return list(read_images(loaded.model, loaded.tokenizer, images, settings, batch_size=batch_size,
                                    on_batch=advance))

        return read_items(review_input, reader, read), reader


def _settings(model: str):
    from banglaocr.infer import read_settings

    return read_settings(model, check_folder=False)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _serve(app, host: str, port: int, session, open_browser: bool) -> None:
    """Listen on host:port, print the URL, serve until Ctrl-C (or SIGTERM)."""
    import socket

    import uvicorn

    from banglaocr.errors import UserError

    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
        sock.listen(128)  # connections wait in the queue from now on: the URL printed next works at once
    except OSError as err:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port} ({err.strerror or err}); choose another --port "
                        "(0 = any free port)") from None
    bound = sock.getsockname()[1]
    shown = f"[{host.strip('[]')}]" if family == socket.AF_INET6 else host
    url = f"http://{shown}:{bound}/"
    progress = session.progress()
    console.print(f"review {progress['total']} words ({progress['reviewed']} reviewed) at {url}  (Ctrl-C stops)",
                  highlight=False, soft_wrap=True)
    console.file.flush()  # a pipe (a test, a log) gets the URL now, not when the server stops
    if open_browser:
        import webbrowser

        webbrowser.open(url)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn stops cleanly on Ctrl-C, then raises the signal again for the caller
        pass


def _summary(session) -> None:
    progress = session.progress()
    console.print(f"reviewed {progress['reviewed']} of {progress['total']} words: {progress['saved']} saved "
                  f"({progress['changed']} changed), {progress['illegible']} illegible, {progress['skipped']} "
                  f"skipped; data set: {session.dataset.folder}", highlight=False, soft_wrap=True)
    if progress["saved"]:
        console.print("adapt the model to them:", highlight=False)
        console.print(session.train_command, highlight=False, markup=False, soft_wrap=True)
