"""A simulated air-quality sensor: a pure, seeded function of time (stdlib only).

reading_at(t) combines
- a deterministic profile in local solar time (longitude / 15 h from UTC): ozone peaks mid-afternoon
  (photochemistry) and is titrated by NO2; NO2 and CO peak in the morning and evening rush hours
  and drop at weekends; particulate matter adds a slow background, traffic and evening heating;
  SO2 follows daytime mixing of elevated plumes; summer raises ozone, winter raises the rest;
- autocorrelated log-normal noise: AR(1) processes on a 10-minute grid (hours for the gases, about
  a day for PM and for a shared "stagnation" weather factor that lifts PM, NO2 and CO together),
  linearly interpolated, so consecutive readings move smoothly;
- a little white measurement noise.
The same seed, place and instant always give the same reading, in any process and in any order, so
the backfill can generate history with exactly the sensor the live agent runs.
"""

from __future__ import annotations

import math
import random
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

# datetime.UTC needs Python 3.11; the agent also runs on devices with 3.10.
UTC = timezone.utc

POLLUTANTS = ("ozone", "particulate_matter", "carbon_monoxide", "sulfur_dioxide", "nitrogen_dioxide")
GRID = timedelta(minutes=10)
_STEPS_PER_DAY = int(timedelta(days=1) / GRID)
# Each day's noise is generated from a few days earlier so that it is stationary at the day's start
# without depending on any other call (exp(-4) of the slowest process's state is left over).
_BURN_IN_DAYS = 4
# Where devices without a position are placed: around Aarhus, as in the contract's example.
_HOME = (56.1629, 10.2039)


@dataclass(frozen=True)
class _Noise:
    tau_hours: float  # correlation time of the AR(1) process
    sigma: float  # its stationary standard deviation (log space)

    @property
    def phi(self) -> float:
        return math.exp(-GRID / timedelta(hours=self.tau_hours))


# Order matters: it fixes the draw order of the seeded generator.
_NOISE = {
    "ozone": _Noise(3.0, 0.15),
    "particulate_matter": _Noise(18.0, 0.25),
    "carbon_monoxide": _Noise(2.0, 0.2),
    "sulfur_dioxide": _Noise(6.0, 0.35),
    "nitrogen_dioxide": _Noise(2.0, 0.2),
    "stagnation": _Noise(24.0, 0.25),
}
# (lowest, highest, decimals): µg/m³ except carbon monoxide in mg/m³.
_RANGES = {
    "ozone": (1.0, 240.0, 1),
    "particulate_matter": (1.0, 300.0, 1),
    "carbon_monoxide": (0.05, 10.0, 3),
    "sulfur_dioxide": (0.2, 120.0, 2),
    "nitrogen_dioxide": (1.0, 250.0, 1),
}
_MEASUREMENT_SIGMA = 0.03


def seed_for(thing_name: str) -> int:
    """Return a stable seed derived from a thing name (the same in every process)."""
    return zlib.crc32(thing_name.encode())


def _bump(hour: float, center: float, width: float) -> float:
    """A Gaussian bump on the 24-hour circle."""
    delta = (hour - center + 12.0) % 24.0 - 12.0
    return math.exp(-0.5 * (delta / width) ** 2)


class AirQualitySimulator:
    """A seeded virtual sensor at (latitude, longitude); see the module docstring for the model."""

    def __init__(self, seed: int, latitude: float | None = None, longitude: float | None = None) -> None:
        self.seed = int(seed)
        site = random.Random(f"iotcast-site:{self.seed}")
        # Devices without a position get a stable one near home, so readings still carry coordinates.
        self.latitude = latitude if latitude is not None else round(_HOME[0] + site.uniform(-0.08, 0.08), 5)
        self.longitude = longitude if longitude is not None else round(_HOME[1] + site.uniform(-0.12, 0.12), 5)
        self.traffic_scale = site.uniform(0.6, 1.5)  # kerbside vs park
        self.background_pm = site.uniform(6.0, 13.0)
        self.industry = site.uniform(0.4, 2.0)
        self._noise_days: dict[int, list[dict[str, float]]] = {}

    def reading_at(self, when: datetime) -> dict[str, float]:
        """Return the five pollutant readings plus latitude and longitude at when (naive means UTC)."""
        when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
        base = self._profile(when)
        noise = self._noise_at(when)
        jitter = random.Random(f"iotcast-measure:{self.seed}:{int(when.timestamp() * 1000)}")
        reading: dict[str, float] = {}
        for name in POLLUTANTS:
            log_factor = noise[name] + self._stagnation_effect(name, noise["stagnation"])
            value = base[name] * math.exp(log_factor + jitter.gauss(0.0, _MEASUREMENT_SIGMA))
            low, high, decimals = _RANGES[name]
            reading[name] = round(min(max(value, low), high), decimals)
        reading["latitude"] = self.latitude
        reading["longitude"] = self.longitude
        return reading

    def series(self, start: datetime, periods: int, step: timedelta = timedelta(hours=1)) -> Iterator[tuple]:
        """Yield (instant, reading) for periods instants from start, step apart (e.g. hourly history)."""
        for index in range(periods):
            instant = start + index * step
            yield instant, self.reading_at(instant)

    # --- deterministic profile ------------------------------------------------------
    def _profile(self, when: datetime) -> dict[str, float]:
        local = when + timedelta(hours=self.longitude / 15.0)
        hour = local.hour + local.minute / 60.0 + local.second / 3600.0
        summer = self._summer(local)
        winter = 1.0 - summer
        traffic = self.traffic_scale * self._traffic(hour, local.weekday())
        heating = winter * _bump(hour, 20.0, 2.5)
        no2 = 6.0 + 32.0 * traffic * (1.0 + 0.2 * winter)
        # Fresh NO from traffic eats ozone (titration), so kerbside ozone dips at rush hour.
        ozone = (30.0 + 30.0 * summer) + (15.0 + 45.0 * summer) * _bump(hour, 15.0, 3.2) - 0.3 * (no2 - 6.0)
        return {
            "nitrogen_dioxide": no2,
            "ozone": max(ozone, 2.0),
            "carbon_monoxide": 0.18 + 0.45 * traffic + 0.25 * heating,
            "particulate_matter": self.background_pm * (1.0 + 0.3 * winter) + 6.0 * traffic + 8.0 * heating,
            "sulfur_dioxide": 1.2 + self.industry * (1.2 + 2.5 * _bump(hour, 12.0, 3.5)) * (1.0 + 0.5 * winter),
        }

    @staticmethod
    def _traffic(hour: float, weekday: int) -> float:
        """Relative traffic (about 0.2 at night, 1 at the weekday morning peak)."""
        weekend = weekday >= 5
        morning = _bump(hour, 8.0, 1.3) * (0.35 if weekend else 1.0)
        evening = _bump(hour, 17.5, 1.8) * (0.6 if weekend else 0.85)
        daytime = 0.3 * _bump(hour, 13.0, 4.0) * (0.8 if weekend else 1.0)
        return 0.15 + morning + evening + daytime

    def _summer(self, local: datetime) -> float:
        """0 in midwinter, 1 in midsummer (hemisphere from latitude)."""
        peak_day = 172 if self.latitude >= 0 else 355
        return 0.5 + 0.5 * math.cos(2.0 * math.pi * (local.timetuple().tm_yday - peak_day) / 365.25)

    @staticmethod
    def _stagnation_effect(name: str, stagnation: float) -> float:
        # Still air accumulates primary pollutants; ozone barely cares.
        weights = {"particulate_matter": 1.0, "nitrogen_dioxide": 0.8, "carbon_monoxide": 0.8, "sulfur_dioxide": 0.5}
        return weights.get(name, -0.2) * stagnation

    # --- autocorrelated noise -------------------------------------------------------
    def _noise_at(self, when: datetime) -> dict[str, float]:
        midnight = when.replace(hour=0, minute=0, second=0, microsecond=0)
        position = (when - midnight) / GRID
        index = int(position)
        fraction = position - index
        day = midnight.toordinal()
        here = self._noise_day(day)[index]
        there = self._noise_day(day + 1)[0] if index + 1 == _STEPS_PER_DAY else self._noise_day(day)[index + 1]
        return {name: here[name] + fraction * (there[name] - here[name]) for name in _NOISE}

    def _noise_day(self, day: int) -> list[dict[str, float]]:
        if day not in self._noise_days:
            if len(self._noise_days) > 64:
                self._noise_days.clear()
            self._noise_days[day] = self._generate_noise_day(day)
        return self._noise_days[day]

    def _generate_noise_day(self, day: int) -> list[dict[str, float]]:
        # (phi, innovation sd) per process: stationary sd stays sigma.
        coefficients = [(n.phi, n.sigma * math.sqrt(1.0 - n.phi**2)) for n in _NOISE.values()]
        state = [0.0] * len(_NOISE)
        steps: list[dict[str, float]] = []
        for past in range(day - _BURN_IN_DAYS, day + 1):
            draws = random.Random(f"iotcast-noise:{self.seed}:{past}")
            for _ in range(_STEPS_PER_DAY):
                state = [
                    phi * value + draws.gauss(0.0, sd) for (phi, sd), value in zip(coefficients, state, strict=True)
                ]
                if past == day:
                    steps.append(dict(zip(_NOISE, state, strict=True)))
        return steps
