"""The generation marks of the topics, and the one a data dir records."""

from quotacache.dev.generations import generation_of, marks, record_generation, recorded_generation


def test_the_newest_mark_of_this_prefix_is_the_generation():
    topics = ["q.refresh", "q.generation-2", "q.generation-10", "other.generation-99",
              "q.generation-x", "q.generation-3.old"]
    assert marks("q.", topics) == {"q.generation-2": 2, "q.generation-10": 10}
    assert generation_of("q.", topics) == 10
    assert generation_of("q.", ["q.refresh"]) == 1  # never rotated (or real Kafka)


def test_a_data_dir_that_recorded_none_counts_as_the_first_generation(tmp_path):
    assert recorded_generation(tmp_path / "data") == 1
    record_generation(tmp_path / "data", 3)
    assert recorded_generation(tmp_path / "data") == 3
    (tmp_path / "data" / "topics-generation").write_text("garbage")
    assert recorded_generation(tmp_path / "data") == 1
