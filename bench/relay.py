"""The ceiling for bench/inference.py: a relay that copies features to another topic unchanged.

It uses the inference worker's client stack (the same Faust worker, batch consumer, delivery and
commits), without decoding or a model.

    python bench/relay.py OUTPUT_TOPIC   (settings from LOOPLINE_* like any worker)
"""

from __future__ import annotations

import sys

from streams.agents.app import make_app, run
from streams.agents.batches import BatchConsumer, deliver, make_producer
from streams.settings import InferenceSettings, KafkaSettings


def main() -> None:
    kafka, settings = KafkaSettings(), InferenceSettings()
    output = sys.argv[1]
    app = make_app("relay", kafka)

    @app.task
    async def relay() -> None:
        producer = make_producer(kafka)
        await producer.start()
        consumer = BatchConsumer(kafka, kafka.topic("features"), f"{kafka.topic_prefix}relay",
                                 settings.max_batch_size, settings.max_wait_ms / 1000)  # fmt: skip
        try:
            async with consumer:
                async for batch in consumer.batches():
                    await deliver(producer, [(output, record.key, record.value) for record in batch])
                    await consumer.commit(batch)
        finally:
            await producer.stop()

    run(app, loglevel="warning")


if __name__ == "__main__":
    main()
