from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.knowledge import selectors


class KnowledgeBaseSearchApi(APIView):
    """Search a knowledge base: ranked sources with their scores, and whether the top one is
    confident enough to answer."""

    class InputSerializer(serializers.Serializer):
        query = serializers.CharField(
            max_length=settings.KNOWLEDGE["MAX_QUERY_CHARS"],
            allow_blank=False,
            trim_whitespace=True,
        )
        top_k = serializers.IntegerField(min_value=1, max_value=50, required=False)
        language = serializers.ChoiceField(choices=["zh", "en"], required=False)

    class SourceSerializer(serializers.Serializer):
        article_id = serializers.IntegerField()
        title = serializers.CharField()
        chunk_id = serializers.IntegerField()
        text = serializers.CharField(source="chunk_text")
        heading = serializers.CharField()
        dense_score = serializers.FloatField()
        keyword_score = serializers.FloatField()
        fused_score = serializers.FloatField()

    class OutputSerializer(serializers.Serializer):
        query = serializers.CharField()
        language = serializers.CharField()
        confidence = serializers.FloatField()
        answerable = serializers.BooleanField()
        threshold = serializers.FloatField()
        sources = serializers.ListField(child=serializers.DictField())
        timings_ms = serializers.DictField(child=serializers.FloatField())

    @extend_schema(request=InputSerializer, responses=OutputSerializer)
    def post(self, request: Request, kb_id: int) -> Response:
        kb = selectors.knowledge_base_get(kb_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        result = selectors.search(kb, **data.validated_data)
        sources = self.SourceSerializer(result.sources, many=True).data
        return Response(
            {
                "query": result.query,
                "language": result.language,
                "confidence": round(result.confidence, 4),
                "answerable": result.answerable,
                "threshold": result.threshold,
                "sources": sources,
                "timings_ms": {k: round(v, 2) for k, v in result.timings_ms.items()},
            }
        )
