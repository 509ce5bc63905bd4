"""What the course notebooks (tutorials/) share, so that each notebook shows only its own section's idea.

    models.py     the course's data and networks: an F-MNIST subset, a small CNN (and a tiny LSNN), the training
                  loop, the small pretrained checkpoints shipped in minimal/data/embedded/course/ and the function
                  that retrains them
    figures.py    the few figures the notebooks draw (box plots of accuracies, curves over ζ or training steps)
    grading.py    check(exercise_id, answer, …): grades an exercise against the library's own implementation and
                  says what is wrong; exercises_NN.py hold the graders of notebook NN

The exercises themselves live in the notebooks, marked with nbgrader's `### BEGIN SOLUTION` / `### END SOLUTION`;
`python -m minimal.course student OUTDIR` writes the student version (minimal/course.py).
"""
# the graders register themselves when their modules are imported
from . import (exercises_00, exercises_01, exercises_02, exercises_03, exercises_04,  # noqa: F401
               exercises_05, exercises_06, exercises_07, exercises_08, exercises_09)
from .figures import accuracy_boxes, curves
from .grading import ExerciseFailed, check, exercise_ids
from .models import (CHECKPOINT_DIR, COURSE_MODELS, SECOND_INSTANCES, course_cnn, load_course_data,
                     load_course_model, retrain_course_models, tiny_lsnn, train)
