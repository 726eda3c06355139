"""What every backend's ``attach`` returns."""


class Attachment(object):
    """A model's Lookahead as installed by one backend.

    ``variables`` is the ``LookaheadVariables`` the training step updates;
    ``read(vars)`` / ``write(vars, values)`` move numpy values in and out of TF
    variables the way this TF version wants; ``detach()`` restores the model's
    own training.
    """

    def __init__(self, variables, read, write, detach):
        self.variables = variables
        self.read = read
        self.write = write
        self.detach = detach
