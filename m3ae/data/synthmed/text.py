"""Reports, captions and VQA questions written from synthmed scene attributes.

Phrasing varies (synonyms, sentence order, optional normal statements and
negations of absent findings), so a report's finding words cannot be guessed
from the rest of the report: "cyst" appears both in "there is a cyst" and in
"no cyst", and only the image tells which. Questions are balanced so that the
question alone does not give the answer away (see `questions`).
"""

from __future__ import annotations

import random

from m3ae.data.synthmed.scene import (INTENSITIES, KINDS, MODALITIES, POSITIONS, REGIONS, SHAPES, SIDES, SIZES,
                                      Scenes)

MODALITY_WORDS = {"ct": ["CT", "computed tomography", "axial CT", "CT scan"],
                  "mri": ["MRI", "MR image", "T2 MRI", "magnetic resonance image"],
                  "x-ray": ["radiograph", "x-ray", "plain film", "plain radiograph"]}
REGION_WORDS = {"brain": ["brain", "head"], "chest": ["chest", "thorax"], "abdomen": ["abdomen", "abdomen"]}
PART = {"brain": "hemisphere", "chest": "lung", "abdomen": "abdomen"}  # "the left upper lung"
KIND_WORDS = {"mass": ["mass", "tumour", "mass lesion"], "cyst": ["cyst", "cystic lesion"],
              "nodule": ["nodule", "nodular opacity"], "fluid": ["fluid collection", "effusion", "fluid"],
              "abscess": ["abscess", "abscess cavity"]}
SIZE_WORDS = {"small": ["small", "tiny", "little"], "medium": ["medium", "moderate", "intermediate"],
              "large": ["large", "big", "sizable"]}
SHAPE_WORDS = {"round": ["round", "rounded", "circular"], "oval": ["oval", "ovoid", "elliptical"],
               "lobulated": ["lobulated", "multilobulated"], "irregular": ["irregular", "spiculated", "indistinct"]}
# VQA answers name the intensity in the modality's own term
INTENSITY_ANSWER = {"ct": {"hyper": "hyperdense", "hypo": "hypodense", "iso": "isodense"},
                    "mri": {"hyper": "hyperintense", "hypo": "hypointense", "iso": "isointense"},
                    "x-ray": {"hyper": "hyperdense", "hypo": "hypodense", "iso": "isodense"}}
INTENSITY_WORDS = {"ct": {"hyper": ["hyperdense", "hyperattenuating"], "hypo": ["hypodense", "hypoattenuating"],
                          "iso": ["isodense", "isoattenuating"]},
                   "mri": {"hyper": ["hyperintense", "bright"], "hypo": ["hypointense", "dark"],
                           "iso": ["isointense", "isointense"]},
                   "x-ray": {"hyper": ["dense", "radiopaque"], "hypo": ["lucent", "radiolucent"],
                             "iso": ["faint", "subtle"]}}

_FINDING_SENTENCES = (
    "There is {a_size} {shape} {intensity} {kind} in the {loc}.",
    "{A_size} {intensity} {kind} is seen in the {loc}; it is {shape}.",
    "{Loc}: {size} {shape} {kind}, {intensity}.",
    "{Loc} {kind}: {size}, {shape}, {intensity}.",
    "{Size} {kind} in the {loc} with {shape} margins, {intensity}.",
)
_HEADERS = ("{Modality} of the {region}.", "{Region} {modality}.", "{Modality}, {region}.")
_NEGATIONS = ("No {kind}.", "No evidence of {kind}.", "There is no {kind}.", "{Kind} is not seen.")
_NORMAL = ("No focal abnormality.", "Normal study.", "Unremarkable {region}.", "No acute findings.")
_EXTRA = ("The {other} {part} is clear.", "Bones are intact.", "No other abnormality.")


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def location(region: str, side: str, position: str) -> str:
    """'left upper lung'."""
    return f"{side} {position} {PART[region]}"


def scene_words(scenes: Scenes, i: int) -> tuple[str, str, list[dict[str, str]]]:
    return MODALITIES[int(scenes.modality[i])], REGIONS[int(scenes.region[i])], scenes.findings(i)


def report(scenes: Scenes, i: int, rnd: random.Random) -> str:
    """A radiology report of scene i: a header, one sentence per finding,
    optional negations of absent kinds and normal statements, shuffled."""
    modality, region, findings = scene_words(scenes, i)
    header = rnd.choice(_HEADERS).format(
        Modality=_cap(rnd.choice(MODALITY_WORDS[modality])), modality=rnd.choice(MODALITY_WORDS[modality]),
        Region=_cap(rnd.choice(REGION_WORDS[region])), region=rnd.choice(REGION_WORDS[region]))
    body = [_finding_sentence(modality, region, f, rnd) for f in findings]
    absent = [k for k in KINDS if k not in {f["kind"] for f in findings}]
    for kind in rnd.sample(absent, rnd.randint(0, max(0, 2 - len(findings)))):  # keep long reports short
        body.append(_cap(rnd.choice(_NEGATIONS).format(kind=rnd.choice(KIND_WORDS[kind]),
                                                       Kind=rnd.choice(KIND_WORDS[kind]))))
    if not findings:
        body.append(rnd.choice(_NORMAL).format(region=rnd.choice(REGION_WORDS[region])))
    elif len(findings) == 1 and rnd.random() < 0.5:
        other = "right" if findings[0]["side"] == "left" else "left"
        body.append(rnd.choice(_EXTRA).format(other=other, part=PART[region]))
    rnd.shuffle(body)
    return " ".join([header] + body if rnd.random() < 0.8 else body + [header])


def _finding_sentence(modality: str, region: str, f: dict[str, str], rnd: random.Random) -> str:
    loc = location(region, f["side"], f["position"])
    size = rnd.choice(SIZE_WORDS[f["size"]])
    return rnd.choice(_FINDING_SENTENCES).format(
        size=size, Size=_cap(size), a_size=a(size), A_size=_cap(a(size)), shape=rnd.choice(SHAPE_WORDS[f["shape"]]),
        intensity=rnd.choice(INTENSITY_WORDS[modality][f["intensity"]]), kind=rnd.choice(KIND_WORDS[f["kind"]]),
        loc=loc, Loc=_cap(loc))


def caption(scenes: Scenes, i: int, primary: int, rnd: random.Random) -> str:
    """A MELINDA-like figure caption for the classification task: what was
    imaged and where to look, never what the finding is (the label)."""
    modality, region, findings = scene_words(scenes, i)
    text = f"{_cap(rnd.choice(MODALITY_WORDS[modality]))} of the {rnd.choice(REGION_WORDS[region])}."
    if primary:
        f = next(f for f in findings if f["kind"] == KINDS[primary - 1])
        text += f" Arrow marks the finding in the {location(region, f['side'], f['position'])}."
    else:
        text += rnd.choice([" See text.", " Representative image.", ""])
    return text


# ------------------------------------------------------------------ questions

CLOSED, OPEN = 0, 1


def questions(scenes: Scenes, i: int, n: int, rnd: random.Random) -> list[tuple[str, str, int]]:
    """n distinct (question, answer, answer_type) about scene i; half closed.

    Closed questions are balanced per wording: a target answer (yes/no) is
    drawn first and the question is built to have it (a present or absent
    kind, the true or a wrong attribute value). Questions whose answer the
    image fixes ("is this image normal?") are thinned with a probability
    that evens out yes and no.
    """
    modality, region, findings = scene_words(scenes, i)
    out: list[tuple[str, str, int]] = []
    seen: set[str] = set()
    slot = None
    for _ in range(50 * n):
        if len(out) == n:
            break
        # each question slot draws its type and, for closed ones, its answer once; templates
        # that cannot give that answer for this image are retried, keeping yes and no even
        slot = slot or (_closed if rnd.random() < 0.5 else _open, rnd.random() < 0.5)
        make, want = slot
        qa = make(modality, region, findings, rnd, want)
        if qa is not None and qa[0] not in seen:
            seen.add(qa[0])
            out.append((qa[0], qa[1], CLOSED if make is _closed else OPEN))
            slot = None
    return out


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


MODALITY_NAME = {"ct": "CT", "mri": "MRI", "x-ray": "x-ray"}


def noun(kind: str) -> str:
    """The kind as a countable noun in a question ('fluid collection')."""
    return "fluid collection" if kind == "fluid" else kind


def a(word: str) -> str:
    """'a cyst', 'an abscess', 'an MRI'."""
    return ("an " if word[0].lower() in "aeio" or word.startswith("MRI") else "a ") + word


def _closed(modality, region, findings, rnd, want: bool):
    """A yes/no question whose answer is `want`, or None if this template cannot ask one."""
    kinds = {f["kind"] for f in findings}
    template = rnd.randrange(8)
    if template == 0:  # a kind anywhere
        pool = sorted(kinds) if want else [k for k in KINDS if k not in kinds]
        if not pool:
            return None
        kind = rnd.choice(pool)
        q = rnd.choice(["Is there {k}?", "Does the image show {k}?", "Is {k} seen?"]).format(k=a(noun(kind)))
        return q, _yes(want)
    if template == 1:  # a kind at a location
        if want:
            if not findings:
                return None
            f = rnd.choice(findings)
            kind, side, pos = f["kind"], f["side"], f["position"]
        else:
            kind, side, pos = rnd.choice(KINDS), rnd.choice(SIDES), rnd.choice(POSITIONS)
            if any(f["kind"] == kind and f["side"] == side and f["position"] == pos for f in findings):
                return None
        q = rnd.choice(["Is there {k} in the {l}?", "Is {k} present in the {l}?"])
        return q.format(k=a(noun(kind)), l=location(region, side, pos)), _yes(want)
    if template == 2:  # modality
        name = modality if want else rnd.choice([m for m in MODALITIES if m != modality])
        q = rnd.choice(["Is this {am} image?", "Was this image taken with {m}?"])
        return q.format(am=a(MODALITY_NAME[name]), m=MODALITY_NAME[name]), _yes(want)
    if template == 3:  # region
        name = region if want else rnd.choice([r for r in REGIONS if r != region])
        return rnd.choice(["Is this an image of the {r}?", "Does this image show the {r}?"]).format(r=name), _yes(want)
    if template == 4:  # an attribute of a present finding
        if not findings:
            return None
        f = rnd.choice(findings)
        attr, values = rnd.choice([("size", SIZES), ("side", SIDES), ("shape", SHAPES), ("intensity", INTENSITIES)])
        value = f[attr] if want else rnd.choice([v for v in values if v != f[attr]])
        if attr == "side":
            return f"Is the {noun(f['kind'])} on the {value} side?", _yes(want)
        if attr == "intensity":
            value = INTENSITY_ANSWER[modality][value]
        return f"Is the {noun(f['kind'])} {value}?", _yes(want)
    if template == 5:  # normal? (the image decides; P(normal) = 0.2, so "no" is thinned to even out)
        normal = not findings
        if (normal != want) or (not normal and rnd.random() > 0.45):
            return None
        return rnd.choice(["Is this image normal?", "Is this a normal study?"]), _yes(normal)
    if template == 6:  # any abnormality? (the same, opposite polarity; the rates were measured to even out)
        abnormal = bool(findings)
        if (abnormal != want) or (abnormal and rnd.random() > 0.25):
            return None
        return rnd.choice(["Are there any abnormalities?", "Is there an abnormal finding?"]), _yes(abnormal)
    more = len(findings) > 1  # P(more than one) = 0.45: close to even already
    if more != want:
        return None
    return rnd.choice(["Is there more than one lesion?", "Are there multiple lesions?"]), _yes(more)


def _open(modality, region, findings, rnd, want=None):
    template = rnd.randrange(9)
    if template == 0:
        return rnd.choice(["What modality is this?", "What imaging modality was used?"]), modality
    if template == 1:
        return rnd.choice(["What organ is shown?", "Which body part is imaged?"]), region
    if template == 2:
        q = rnd.choice(["How many lesions are there?", "How many abnormalities are seen?"])
        return q, str(len(findings))
    if not findings:
        return None
    f = rnd.choice(findings)
    kind = noun(f["kind"])
    if template == 3:
        return rnd.choice(["Where is the {k}?", "Where is the {k} located?"]).format(k=kind), \
            f"{f['side']} {f['position']}"
    if template == 4:
        q = rnd.choice(["What is the abnormality in the {l}?", "What lesion is seen in the {l}?"])
        return q.format(l=location(region, f["side"], f["position"])), f["kind"]
    if template == 5:
        return rnd.choice(["What size is the {k}?", "How large is the {k}?"]).format(k=kind), f["size"]
    if template == 6:
        return rnd.choice(["What shape is the {k}?", "How would you describe the shape of the {k}?"]).format(
            k=kind), f["shape"]
    if template == 7:
        word = "signal" if modality == "mri" else "density"
        return f"What is the {word} of the {kind}?", INTENSITY_ANSWER[modality][f["intensity"]]
    return rnd.choice(["Which side is the {k} on?", "On which side is the {k}?"]).format(k=kind), f["side"]
