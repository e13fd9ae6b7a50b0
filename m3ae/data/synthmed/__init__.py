"""synthmed: the embedded synthetic radiology benchmark (scenes -> images, reports, questions)."""

from m3ae.data.synthmed.scene import Scenes, sample_scenes
from m3ae.data.synthmed.tasks import TASKS, build_task, load_split, synth_texts

__all__ = ["Scenes", "sample_scenes", "TASKS", "build_task", "load_split", "synth_texts"]
