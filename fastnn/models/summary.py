"""model.summary() in the tf.keras 2.x plain-text layout."""


def _row(fields, positions):
    # Each field starts where the previous column ends (one space kept) and is
    # cut at its column's end, as tf.keras 2.x prints it.
    line = ""
    for i, field in enumerate(fields):
        if i > 0:
            line = line[:-1] + " "
        line += str(field)
        line = line[:positions[i]]
        line += " " * (positions[i] - len(line))
    return line


def _shape_str(shape, is_input):
    s = str(tuple(shape))
    return f"[{s}]" if is_input else s


def print_summary(model, line_length=None, positions=None, print_fn=None):
    from fastnn.layers.core import InputLayer

    line_length = line_length or 65
    positions = positions or [0.45, 0.85, 1.0]
    if positions[-1] <= 1:
        positions = [int(line_length * p) for p in positions]
    if len(positions) != 3:
        raise ValueError(f"positions must have 3 entries, got {positions}")
    print_fn = print_fn or print

    print_fn(f'Model: "{model.name}"')
    print_fn("_" * line_length)
    print_fn(_row(["Layer (type)", "Output Shape", "Param #"], positions))
    print_fn("=" * line_length)
    layers = model._summary_layers()
    for i, layer in enumerate(layers):
        is_input = isinstance(layer, InputLayer)
        print_fn(_row([f"{layer.name} ({type(layer).__name__})",
                       _shape_str(layer.output_shape, is_input), layer.count_params()],
                      positions))
        print_fn(("=" if i == len(layers) - 1 else "_") * line_length)
    if not layers:
        print_fn("=" * line_length)
    total = sum(layer.count_params() for layer in layers)
    trainable = sum(layer.count_params() for layer in layers if layer.trainable)
    print_fn(f"Total params: {total:,}")
    print_fn(f"Trainable params: {trainable:,}")
    print_fn(f"Non-trainable params: {total - trainable:,}")
    print_fn("_" * line_length)
