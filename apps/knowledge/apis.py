from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.audit.models import Scope
from apps.knowledge import selectors


# At module level: a serializer nested in a class body cannot see its sibling classes.
@extend_schema_serializer(component_name="KnowledgeBaseSearchSource")
class SearchSourceSerializer(serializers.Serializer):
    article_id = serializers.IntegerField()
    title = serializers.CharField()
    chunk_id = serializers.IntegerField()
    text = serializers.CharField(source="chunk_text")
    heading = serializers.CharField()
    dense_score = serializers.FloatField()
    keyword_score = serializers.FloatField()
    fused_score = serializers.FloatField()


class KnowledgeBaseSearchApi(APIView):
    """Search a knowledge base: ranked sources with their scores, and whether the top one is
    confident enough to answer."""

    required_scope = Scope.KB_READ  # for API keys

    # Named components: every API has nested Input/OutputSerializers, and drf-spectacular would
    # otherwise name them all "Input" and "Output" and let them collide in the schema.
    @extend_schema_serializer(component_name="KnowledgeBaseSearchInput")
    class InputSerializer(serializers.Serializer):
        query = serializers.CharField(
            max_length=settings.KNOWLEDGE["MAX_QUERY_CHARS"],
            allow_blank=False,
            trim_whitespace=True,
        )
        top_k = serializers.IntegerField(min_value=1, max_value=50, required=False)
        language = serializers.ChoiceField(choices=["zh", "en"], required=False)

    @extend_schema_serializer(component_name="KnowledgeBaseSearchOutput")
    class OutputSerializer(serializers.Serializer):
        query = serializers.CharField()
        language = serializers.CharField()
        confidence = serializers.FloatField()
        answerable = serializers.BooleanField()
        threshold = serializers.FloatField()
        sources = SearchSourceSerializer(many=True)
        timings_ms = serializers.DictField(child=serializers.FloatField())

    @extend_schema(
        request=InputSerializer,
        responses={
            200: OutputSerializer,
            400: OpenApiResponse(description="Invalid input: the message names the field."),
            404: OpenApiResponse(description="No such knowledge base."),
        },
    )
    def post(self, request: Request, kb_id: int) -> Response:
        kb = selectors.knowledge_base_get(kb_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        result = selectors.search(kb, **data.validated_data)
        sources = SearchSourceSerializer(result.sources, many=True).data
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
