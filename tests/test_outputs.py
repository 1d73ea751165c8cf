from utils.tooling import outputs


def test_noise_finds_raw_dicts_and_float_noise():
    assert outputs.noise("{'a': 1, 'b': 2}")[0].startswith("raw dict")
    assert outputs.noise("lr 0.1599999964237213") == ["float noise '0.1599999964237213'"]
    assert outputs.noise("gap 3.3306690738754696e-15")
    assert outputs.noise("0.1 ± 1.7e-17") == ["float noise '1.7e-17'"]


def test_noise_accepts_formatted_output():
    clean = "test acc 0.912 ± 0.011 | lr 3e-4 | eps 1e-8 | {len(x)} items | set {1, 2} | 2.30e+00"
    assert outputs.noise(clean) == []


def test_output_texts_reads_streams_and_plain_results_only():
    outs = [
        {"output_type": "stream", "name": "stdout", "text": ["a\n", "b\n"]},
        {"output_type": "execute_result", "data": {"text/plain": "{'x': 1}"}},
        {
            "output_type": "display_data",
            "data": {"text/html": "<table/>", "text/plain": "{'y': 2}"},
        },
    ]
    assert outputs.output_texts(outs) == ["a\nb\n", "{'x': 1}"]
