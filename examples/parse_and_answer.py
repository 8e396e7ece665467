"""Parse a kind 5100 request and print the answers a DVM would send, as JSON.

Builds and signs the first example request of the kind 5100 page (a purple ostrich at
sunset, ratio 4:3, a negative prompt) with a throw-away customer key, parses it into an
``ImageJob`` as the provider, then prints the signed ``processing`` feedback, the result
(with a made-up image link and its NIP-92 ``imeta``) and the ``success`` feedback.
Nothing is published: no network is used.

    .venv/bin/python examples/parse_and_answer.py
"""

from __future__ import annotations

import hashlib
import json

from nostr_imagegen import (
    Event,
    ImageLink,
    JobStatus,
    Keys,
    UnsignedEvent,
    build_feedback,
    build_result,
    parse_event,
    parse_image_job,
    sign_event,
)


def show(title: str, event: Event) -> None:
    """Print the event as JSON, one field per line and one tag per line."""
    fields = []
    for key, value in event.to_dict().items():
        if key == "tags":
            tags = ",\n".join(f"    {json.dumps(tag, ensure_ascii=False)}" for tag in value)
            fields.append(f'  "tags": [\n{tags}\n  ]')
        else:
            fields.append(f"  {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}")
    print(f"--- {title}")
    print("{\n" + ",\n".join(fields) + "\n}")


def main() -> None:
    customer, provider = Keys.generate(), Keys.generate()

    # The customer's request: "Example 1" of the kind 5100 page.
    request_template = UnsignedEvent(
        kind=5100,
        content="",
        tags=(
            ("i", "A purple ostrich watching the sunset", "text"),
            ("param", "ratio", "4:3"),
            ("param", "negative_prompt", "broken hands, bad quality"),
        ),
    )
    # Round-trip through JSON and the verifying parser, as a relay would deliver it.
    request = parse_event(sign_event(request_template, customer).to_json())
    show("request (kind 5100, signed by the customer)", request)

    job = parse_image_job(request, provider=provider)
    print("--- parsed job")
    print(f"prompt={job.prompt!r} ratio={job.ratio} negative_prompt={job.negative_prompt!r}")

    show(
        "processing feedback (kind 7000)",
        sign_event(build_feedback(job, JobStatus.PROCESSING, message="step 0/20"), provider),
    )

    # Pretend the engine made a 1024x768 PNG and an image host stored it under its hash.
    png_bytes = b"not really a png, just bytes to hash for the example"
    digest = hashlib.sha256(png_bytes).hexdigest()
    image = ImageLink(
        url=f"https://images.example.com/{digest}.png",
        mime="image/png",
        sha256=digest,
        width=1024,
        height=768,
        size_bytes=len(png_bytes),
    )
    show("result (kind 6100)", sign_event(build_result(job, [image]), provider))
    show(
        "success feedback (kind 7000)", sign_event(build_feedback(job, JobStatus.SUCCESS), provider)
    )


if __name__ == "__main__":
    main()
